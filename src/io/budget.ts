/**
 * One allocation budget per untrusted file: everything the file's contents can make cnnf allocate
 * (inflated zip entries, tensors materialised from storages and views, metadata keys and values)
 * is charged here before it is allocated, so a small file cannot make a large process. The budget
 * scales with the file's size (a real checkpoint needs about its size for the raw entries and as much
 * again, up to 4x for 8-bit storages, for its float32 tensors), plus a fixed allowance.
 */
import { UsageError } from '../errors.js';

const MiB = 1024 * 1024;

export class AllocBudget {
  private used = 0;

  constructor(readonly name: string, readonly limit: number) {}

  /** The budget of a file of `fileBytes` bytes: 64 MiB + 6x its size. */
  static forFile(name: string, fileBytes: number): AllocBudget {
    return new AllocBudget(name, 64 * MiB + 6 * fileBytes);
  }

  /** Charges `bytes` for `what`; refuses (one line, the file named) when the budget would be exceeded. */
  take(bytes: number, what: string): void {
    if (!(bytes >= 0)) throw new UsageError(`${this.name}: refused: ${what} has a negative or invalid size`);
    if (this.used + bytes > this.limit) {
      throw new UsageError(`${this.name}: refused: ${what} (${bytes} bytes) would make cnnf allocate more than ${this.limit} bytes for this file (${this.used} used so far)`);
    }
    this.used += bytes;
  }

  get usedBytes(): number {
    return this.used;
  }
}
