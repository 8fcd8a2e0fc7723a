/** cli-table3 with colours only on a terminal (plain text in pipes, logs and CI). */
import Table from 'cli-table3';

export function makeTable(head: string[], opts: { colAligns?: Array<'left' | 'right' | 'center'> } = {}): Table.Table {
  const plain = !process.stdout.isTTY || process.env.NO_COLOR !== undefined;
  const options: Table.TableConstructorOptions = { head };
  if (opts.colAligns) options.colAligns = opts.colAligns;
  if (plain) options.style = { head: [], border: [] };
  return new Table(options);
}
