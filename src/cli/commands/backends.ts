/** `cnnf backends`: every compute backend, whether it runs on this machine, and why not or on what. */
import type { Command } from 'commander';
import Table from 'cli-table3';



export function register(program: Command): void {
  program
    .command('backends')
    .description('list the compute backends (tensorflow-gpu, tensorflow, webgpu, wasm, cpu): available or not, why not, which adapter; and what --backend auto picks')
    .option('--json', 'print the list as JSON on stdout')
    .action(async (flags: { json?: boolean }) => {
      const { listBackends } = await import('../../backend/index.js');
      const { cleanText } = await import('../../format.js');
      const { backends, auto } = await listBackends();
      if (flags.json) {
        // adapter strings come from the driver: sanitised like every string cnnf prints
        const clean = backends.map((b) => (b.adapter ? { ...b, adapter: Object.fromEntries(Object.entries(b.adapter).map(([k, v]) => [k, typeof v === 'string' ? cleanText(v) : v])) } : b));
        process.stdout.write(`${JSON.stringify({ auto, backends: clean }, null, 2)}\n`);
        return;
      }
      const table = new Table({ head: ['backend', 'available', 'details'], style: { head: [], border: [] } });
      // details are already sanitised (adapter strings come from the driver)
      for (const b of backends) table.push([b.name, b.available ? 'yes' : 'no', b.detail]);
      process.stdout.write(`${table.toString()}\n--backend auto picks: ${auto}\n`);
    });
}
