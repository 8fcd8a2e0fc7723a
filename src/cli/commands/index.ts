/** Every cnnf command registers itself here (one module per command). */
import type { Command } from 'commander';

export type Register = (program: Command) => void;
export const commands: Register[] = [];
import { register as registerData } from './data.js'; commands.push(registerData);
import { register as registerReport } from './report.js'; commands.push(registerReport);
import { register as registerGate } from './gate.js'; commands.push(registerGate);
import { register as registerConformance } from './conformance.js'; commands.push(registerConformance);
import { register as registerImport } from './import.js'; commands.push(registerImport);
import { register as registerExport } from './export.js'; commands.push(registerExport);
import { register as registerTrain } from './train.js'; commands.push(registerTrain);
import { register as registerGrid } from './grid.js'; commands.push(registerGrid);
import { register as registerEval } from './eval.js'; commands.push(registerEval);
import { register as registerAttack } from './attack.js'; commands.push(registerAttack);
import { register as registerDemo } from './demo.js'; commands.push(registerDemo);
