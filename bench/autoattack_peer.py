"""AutoAttack's own code (fra31/auto-attack, version='standard') on the PyTorch CNN-F of this folder.

The peer of `npm run bench -- --autoattack` (bench/autoattack.ts): the same weights (a cnnf checkpoint,
converted back to PyTorch layout), the same images and the same Linf radius. AutoAttack is not part of
cnnf: give its checkout with --autoattack-dir (or CNNF_AUTOATTACK_DIR), e.g. `git clone
https://github.com/fra31/auto-attack`; it needs only torch and numpy (Debian: python3-torch, python3-numpy).

  /usr/bin/python3 autoattack_peer.py --model M.safetensors --images X.bin --n 50 --eps 0.1 --threads 2

--images: float32 little-endian [n, 1, 28, 28] in cnnf's [-1, 1] units, then n int32 labels.
AutoAttack works on [0, 1] images: the model is wrapped as f(x01) = cnnf(2 * x01 - 1), so --eps is in
[0, 1] units (cnnf's 0.2 in [-1, 1] units is 0.1 here). Prints one JSON line: seconds, clean and robust
per-example outcomes (1 = correct), the PyTorch version and thread count.
"""
import argparse, json, os, struct, sys, time
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference_bench import CNNF  # noqa: E402


def load_cnnf_checkpoint(path):
    """A cnnf-checkpoint/1 safetensors file (NHWC layouts) as a PyTorch CNNF (NCHW layouts)."""
    b = open(path, 'rb').read()
    n = struct.unpack('<Q', b[:8])[0]
    h = json.loads(b[8:8 + n])
    meta = h.get('__metadata__', {})
    if meta.get('format') != 'cnnf-checkpoint/1':
        raise SystemExit(f'{path}: not a cnnf checkpoint (format {meta.get("format")!r})')
    dtypes = {'F32': torch.float32, 'F16': torch.float16}
    t = {}
    for k, v in h.items():
        if k == '__metadata__':
            continue
        s, e = v['data_offsets']
        t[k] = torch.frombuffer(bytearray(b[8 + n + s:8 + n + e]), dtype=dtypes[v['dtype']]).reshape(v['shape']).float()
    fc = json.loads(meta['fc'])
    m = CNNF(fc[0], fc[1], int(meta['ind']), int(meta['cycles']), float(meta['res_param']))
    with torch.no_grad():
        for i in range(4):
            m.w[i].copy_(t[f'conv{i+1}.conv.weight'].permute(3, 2, 0, 1))  # [kh,kw,in,out] -> [out,in,kh,kw]
            m.nb[i].copy_(t[f'ins{i+1}_bias.bias'].reshape(1, -1, 1, 1))
        # fc1's input is flattened in H,W,C order in cnnf and C,H,W in PyTorch
        w1 = t['fc1.weight']  # [7*7*64, fc1], rows (h*7+w)*64+c
        c = m.w[3].shape[0]
        hw = w1.shape[0] // c
        m.fw[0].copy_(w1.reshape(hw, c, -1).permute(2, 1, 0).reshape(w1.shape[1], -1))
        m.fw[1].copy_(t['fc2.weight'].t())
        m.fw[2].copy_(t['fc3.weight'].t())
        for i in range(3):
            m.fb[i].copy_(t[f'fc{i+1}_bias.bias'].reshape(1, -1))
    return m.eval(), meta


class In01(torch.nn.Module):
    """AutoAttack's [0, 1] view of a [-1, 1] model."""

    def __init__(self, m):
        super().__init__()
        self.m = m

    def forward(self, x01):
        return self.m.run(2 * x01 - 1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--model', required=True)
    ap.add_argument('--images', required=True)
    ap.add_argument('--n', type=int, required=True)
    ap.add_argument('--eps', type=float, default=0.1)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--batch', type=int, default=250)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--autoattack-dir', default=os.environ.get('CNNF_AUTOATTACK_DIR'))
    a = ap.parse_args()
    if not a.autoattack_dir or not os.path.isfile(os.path.join(a.autoattack_dir, 'autoattack', 'autoattack.py')):
        raise SystemExit(f'AutoAttack not found: --autoattack-dir / CNNF_AUTOATTACK_DIR must name a checkout of fra31/auto-attack (got {a.autoattack_dir!r})')
    sys.path.insert(0, a.autoattack_dir)
    from autoattack import AutoAttack  # noqa: E402

    torch.set_num_threads(a.threads)
    raw = open(a.images, 'rb').read()
    px = a.n * 28 * 28
    x = torch.frombuffer(bytearray(raw[:4 * px]), dtype=torch.float32).reshape(a.n, 1, 28, 28)
    y = torch.frombuffer(bytearray(raw[4 * px:4 * px + 4 * a.n]), dtype=torch.int32).long()
    model, meta = load_cnnf_checkpoint(a.model)
    f = In01(model).eval()
    x01 = (x + 1) / 2
    with torch.no_grad():
        clean = (f(x01).argmax(1) == y).int()
    adversary = AutoAttack(f, norm='Linf', eps=a.eps, version='standard', device='cpu', seed=a.seed, verbose=False)
    t0 = time.perf_counter()
    adv = adversary.run_standard_evaluation(x01, y, bs=a.batch)
    seconds = time.perf_counter() - t0
    with torch.no_grad():
        robust = (f(adv).argmax(1) == y).int()
    linf = (adv - x01).abs().max().item()
    print(json.dumps({
        'seconds': round(seconds, 2), 'clean': clean.tolist(), 'robust': robust.tolist(), 'linf01': linf,
        'torch': torch.__version__, 'threads': torch.get_num_threads(), 'cycles': int(meta['cycles']),
    }))


if __name__ == '__main__':
    main()
