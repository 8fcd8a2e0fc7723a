/**
 * A restricted unpickler for untrusted data, written for PyTorch checkpoints (the idea of PyTorch's
 * `weights_only=True`): a non-recursive stack machine over the binary opcodes of protocols 2 to 5
 * that builds plain values (None, bool, int, float, str, bytes, tuple, list, dict) and nothing else by
 * itself. GLOBAL/STACK_GLOBAL may only name what the caller's policy allows, REDUCE may only call what
 * the policy allows (and the policy builds the result), BUILD and BINPERSID go to the policy too.
 * Object-constructing opcodes (INST, OBJ, NEWOBJ, NEWOBJ_EX, EXT*), the text protocol-0 opcodes and
 * anything unknown are refused. Every length is checked against the bytes left before anything is
 * allocated; the stack, the mark stack, the memo and container nesting are bounded. Every refusal is
 * a one-line UsageError naming the file.
 */
import { UsageError } from '../errors.js';

/** A Python tuple (JS arrays are lists). */
export class PyTuple {
  constructor(readonly items: PyValue[]) {}
}
/** A dict or OrderedDict: insertion-ordered, keys None/bool/int/str. */
export class PyDict {
  readonly map = new Map<PyKey, PyValue>();
}
/** A `module.name` reference that the policy allowed. */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}
export type PyKey = string | number | boolean | null;
/** Values produced by the policy (tensors, storages) are opaque objects. */
export type PyValue = null | boolean | number | string | Uint8Array | PyTuple | PyValue[] | PyDict | PyGlobal | object;

export interface PickleLimits {
  maxStack: number;
  maxMarks: number;
  maxMemo: number;
  /** Longest str or bytes value, bytes. */
  maxString: number;
  /** Deepest nesting of containers. */
  maxDepth: number;
}

export const DEFAULT_PICKLE_LIMITS: PickleLimits = {
  maxStack: 1_000_000,
  maxMarks: 10_000,
  maxMemo: 1_000_000,
  maxString: 1 << 20,
  maxDepth: 64,
};

export interface PicklePolicy {
  /** `module.name` strings GLOBAL may name. */
  globals: ReadonlySet<string>;
  /** REDUCE of an allowed global; throw (via `refuse`) for anything not callable. */
  call(fn: PyGlobal, args: PyValue[], refuse: (msg: string) => never): PyValue;
  /** BINPERSID. */
  persistentLoad(pid: PyValue, refuse: (msg: string) => never): PyValue;
  /** BUILD (obj.__setstate__(state)); return the object that replaces obj on the stack. */
  build(obj: PyValue, state: PyValue, refuse: (msg: string) => never): PyValue;
}

const OPNAMES: Record<number, string> = {
  0x69: 'INST', 0x6f: 'OBJ', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x82: 'EXT1', 0x83: 'EXT2', 0x84: 'EXT4',
  0x50: 'PERSID', 0x49: 'INT', 0x4c: 'LONG', 0x46: 'FLOAT', 0x53: 'STRING', 0x55: 'SHORT_BINSTRING', 0x54: 'BINSTRING',
  0x56: 'UNICODE', 0x70: 'PUT', 0x67: 'GET', 0x8b: 'LONG4', 0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x96: 'BYTEARRAY8', 0x97: 'NEXT_BUFFER', 0x98: 'READONLY_BUFFER',
};

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Unpickles `buf` under `policy`; `name` prefixes every error. */
export function unpickle(buf: Uint8Array, name: string, policy: PicklePolicy, limits: Partial<PickleLimits> = {}): PyValue {
  const lim = { ...DEFAULT_PICKLE_LIMITS, ...limits };
  const refuse = (msg: string): never => {
    throw new UsageError(`${name}: refused: ${msg}`);
  };
  const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let pos = 0;
  const stack: PyValue[] = [];
  const marks: number[] = [];
  const memo = new Map<number, PyValue>();
  const depth = new WeakMap<object, number>();

  const need = (n: number, what: string) => {
    if (n > buf.length - pos) refuse(`truncated pickle (${what} needs ${n} bytes, ${buf.length - pos} left)`);
  };
  const u8 = () => { need(1, 'an argument'); return buf[pos++]; };
  const u16 = () => { need(2, 'an argument'); const v = dv.getUint16(pos, true); pos += 2; return v; };
  const u32 = () => { need(4, 'an argument'); const v = dv.getUint32(pos, true); pos += 4; return v; };
  const i32 = () => { need(4, 'an argument'); const v = dv.getInt32(pos, true); pos += 4; return v; };
  const u64 = () => {
    need(8, 'an argument');
    const v = dv.getBigUint64(pos, true);
    pos += 8;
    return v > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(v);
  };
  const bytes = (n: number, what: string): Uint8Array => {
    if (n > lim.maxString) refuse(`${what} of ${n} bytes (at most ${lim.maxString} accepted)`);
    need(n, what);
    const b = buf.subarray(pos, pos + n);
    pos += n;
    return b;
  };
  const str = (n: number): string => {
    const b = bytes(n, 'a string');
    try {
      return utf8.decode(b);
    } catch {
      return refuse('a string is not valid UTF-8');
    }
  };
  const line = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 256) refuse('malformed GLOBAL (name line missing or longer than 256 bytes)');
    const s = Buffer.from(buf.subarray(pos, end)).toString('latin1');
    pos = end + 1;
    return s;
  };
  const depthOf = (v: unknown): number => (typeof v === 'object' && v !== null ? depth.get(v) ?? 0 : 0);
  const contain = (container: object, children: Iterable<unknown>) => {
    let d = depth.get(container) ?? 1;
    for (const c of children) d = Math.max(d, depthOf(c) + 1);
    if (d > lim.maxDepth) refuse(`containers nested deeper than ${lim.maxDepth}`);
    depth.set(container, d);
  };
  const push = (v: PyValue) => {
    if (stack.length >= lim.maxStack) refuse(`pickle stack deeper than ${lim.maxStack}`);
    stack.push(v);
  };
  const pop = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1])) refuse('malformed pickle (stack underflow)');
    return stack.pop()!;
  };
  const top = (): PyValue => {
    if (stack.length === 0 || (marks.length > 0 && stack.length <= marks[marks.length - 1])) refuse('malformed pickle (empty stack)');
    return stack[stack.length - 1];
  };
  const popMark = (): PyValue[] => {
    const m = marks.pop();
    if (m === undefined) refuse('malformed pickle (no MARK)');
    return stack.splice(m!);
  };
  const memoPut = (i: number, v: PyValue) => {
    if (!memo.has(i) && memo.size >= lim.maxMemo) refuse(`memo larger than ${lim.maxMemo} entries`);
    memo.set(i, v);
  };
  const memoGet = (i: number): PyValue => {
    if (!memo.has(i)) refuse(`malformed pickle (memo entry ${i} is missing)`);
    return memo.get(i)!;
  };
  const key = (k: PyValue): PyKey => {
    if (k === null || typeof k === 'string' || typeof k === 'number' || typeof k === 'boolean') return k;
    return refuse('a dict key is not a str, int, bool or None');
  };
  const setItems = (d: PyValue, kv: PyValue[]) => {
    if (!(d instanceof PyDict)) refuse('SETITEM(S) on something that is not a dict');
    if (kv.length % 2 !== 0) refuse('malformed pickle (odd number of dict items)');
    const dict = d as PyDict;
    for (let i = 0; i < kv.length; i += 2) dict.map.set(key(kv[i]), kv[i + 1]);
    contain(dict, kv.filter((_, i) => i % 2 === 1));
  };
  const appendItems = (l: PyValue, items: PyValue[]) => {
    if (!Array.isArray(l)) refuse('APPEND(S) on something that is not a list');
    const list = l as PyValue[];
    if (list.length + items.length > lim.maxStack) refuse(`list longer than ${lim.maxStack}`);
    for (const it of items) list.push(it);
    contain(list, items);
  };
  const tuple = (items: PyValue[]): PyTuple => {
    const t = new PyTuple(items);
    contain(t, items);
    return t;
  };
  const global = (module: string, nm: string): PyGlobal => {
    const q = `${module}.${nm}`;
    if (!policy.globals.has(q)) refuse(`the pickle names ${q}, which is not allowed here`);
    return new PyGlobal(module, nm);
  };

  while (true) {
    if (pos >= buf.length) refuse('truncated pickle (no STOP opcode)');
    const op = buf[pos++];
    switch (op) {
      case 0x80: { // PROTO
        const p = u8();
        if (p < 2 || p > 5) refuse(`pickle protocol ${p} (2 to 5 are read)`);
        break;
      }
      case 0x95: { // FRAME: framing is advisory for an in-memory reader
        const n = u64();
        if (n > buf.length - pos) refuse('truncated pickle (frame longer than the data)');
        break;
      }
      case 0x2e: { // STOP
        if (marks.length !== 0 || stack.length !== 1) refuse('malformed pickle (STOP with a non-empty stack)');
        return stack[0];
      }
      case 0x28: // MARK
        if (marks.length >= lim.maxMarks) refuse(`more than ${lim.maxMarks} nested MARKs`);
        marks.push(stack.length);
        break;
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: push(top()); break; // DUP
      case 0x4e: push(null); break; // NONE
      case 0x88: push(true); break; // NEWTRUE
      case 0x89: push(false); break; // NEWFALSE
      case 0x4a: push(i32()); break; // BININT
      case 0x4b: push(u8()); break; // BININT1
      case 0x4d: push(u16()); break; // BININT2
      case 0x8a: { // LONG1
        const n = u8();
        if (n > 8) refuse(`an integer of ${n} bytes (at most 8 accepted)`);
        need(n, 'an integer');
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[pos + i]);
        if (n > 0 && buf[pos + n - 1] & 0x80) v -= 1n << BigInt(8 * n);
        pos += n;
        if (v > BigInt(Number.MAX_SAFE_INTEGER) || v < BigInt(Number.MIN_SAFE_INTEGER)) refuse(`integer ${v} is out of the safe range`);
        push(Number(v));
        break;
      }
      case 0x47: { // BINFLOAT (big-endian double)
        need(8, 'a float');
        push(dv.getFloat64(pos, false));
        pos += 8;
        break;
      }
      case 0x58: push(str(u32())); break; // BINUNICODE
      case 0x8c: push(str(u8())); break; // SHORT_BINUNICODE
      case 0x8d: push(str(u64())); break; // BINUNICODE8
      case 0x42: push(Uint8Array.from(bytes(u32(), 'a bytes value'))); break; // BINBYTES
      case 0x43: push(Uint8Array.from(bytes(u8(), 'a bytes value'))); break; // SHORT_BINBYTES
      case 0x8e: push(Uint8Array.from(bytes(u64(), 'a bytes value'))); break; // BINBYTES8
      case 0x29: push(tuple([])); break; // EMPTY_TUPLE
      case 0x74: push(tuple(popMark())); break; // TUPLE
      case 0x85: { const a = pop(); push(tuple([a])); break; } // TUPLE1
      case 0x86: { const b = pop(); const a = pop(); push(tuple([a, b])); break; } // TUPLE2
      case 0x87: { const c = pop(); const b = pop(); const a = pop(); push(tuple([a, b, c])); break; } // TUPLE3
      case 0x5d: { const l: PyValue[] = []; depth.set(l, 1); push(l); break; } // EMPTY_LIST
      case 0x6c: { const items = popMark(); const l: PyValue[] = []; depth.set(l, 1); appendItems(l, items); push(l); break; } // LIST
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; } // APPEND
      case 0x65: { const items = popMark(); appendItems(top(), items); break; } // APPENDS
      case 0x7d: { const d = new PyDict(); depth.set(d, 1); push(d); break; } // EMPTY_DICT
      case 0x64: { const kv = popMark(); const d = new PyDict(); depth.set(d, 1); setItems(d, kv); push(d); break; } // DICT
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; } // SETITEM
      case 0x75: { const kv = popMark(); setItems(top(), kv); break; } // SETITEMS
      case 0x71: memoPut(u8(), top()); break; // BINPUT
      case 0x72: memoPut(u32(), top()); break; // LONG_BINPUT
      case 0x94: memoPut(memo.size, top()); break; // MEMOIZE
      case 0x68: push(memoGet(u8())); break; // BINGET
      case 0x6a: push(memoGet(u32())); break; // LONG_BINGET
      case 0x63: { const module = line(); const nm = line(); push(global(module, nm)); break; } // GLOBAL
      case 0x93: { // STACK_GLOBAL
        const nm = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof nm !== 'string') refuse('STACK_GLOBAL of something that is not two strings');
        push(global(module as string, nm as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) refuse('REDUCE of something that is not an allowed global');
        if (!(args instanceof PyTuple)) refuse('REDUCE with arguments that are not a tuple');
        push(policy.call(fn as PyGlobal, (args as PyTuple).items, refuse));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = pop();
        push(policy.build(obj, state, refuse));
        break;
      }
      case 0x51: { // BINPERSID
        const pid = pop();
        push(policy.persistentLoad(pid, refuse));
        break;
      }
      default: {
        const nm = OPNAMES[op];
        refuse(nm ? `pickle opcode ${nm} (object construction or text protocol) is not allowed` : `unknown pickle opcode 0x${op.toString(16).padStart(2, '0')} at byte ${pos - 1}`);
      }
    }
  }
}
