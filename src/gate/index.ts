// src/gate owns `cnnf gate`: parsing "[MODEL/]METRIC OP NUMBER" requirements, checking them against
// a results file (fail closed on missing metrics), the pass/fail table and JUnit XML output.
export {
  parseRequirement, evaluateGate, lookupMetric, compare, GATE_OPS, EQ_TOLERANCE,
  type Requirement, type GateOp, type GateCheck, type GateReport, type CheckStatus,
} from './gate.js';
export { gateToJUnit } from './junit.js';
export { readGateConfig, validateGateConfig } from './config.js';
export { gateTable } from './table.js';
