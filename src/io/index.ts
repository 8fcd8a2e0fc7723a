/** Files: safetensors reading/writing with validation, cnnf checkpoints, the PyTorch layout
 *  conversion, torch.save checkpoints (bounded zip + restricted unpickler) and export, and atomic
 *  writes (temp file + rename) that every output goes through; ONNX models in (onnx.ts: protobufjs and
 *  the official schema, validated and bounded) and plain CNNs out (export-onnx.ts). */
export * from './atomic.js';
export * from './files.js';
export * from './safetensors.js';
export * from './checkpoint.js';
export * from './pytorch.js';
export * from './json.js';
export * from './torch.js';
export * from './export.js';
export * from './tfjs.js';
export * from './tfjs-topology.js';
export * from './shipped.js';
export * from './onnx.js';
export * from './export-onnx.js';
