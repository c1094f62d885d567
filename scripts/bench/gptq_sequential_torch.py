#!/usr/bin/env python3
"""Sequential GPTQ in PyTorch on the CPU: the baseline of docs/performance.md §2 for QuantLens'
`quantize --recipe <GPTQ W4A16> --calib` job (bench section `gptq-job`, test/bench/gptqJob.bench.ts).

Written for QuantLens from the published algorithm (Frantar et al., GPTQ, ICLR 2023) and the behaviour of
llm-compressor's sequential pipeline as docs/formats.md and src/core/quant/gptq.ts describe it; no code is
taken from llm-compressor. What it does, per decoder block of a Llama checkpoint:

  1. run the block (float weights) on the current hidden states of every sample, one sample per forward as
     llm-compressor's default batch of 1, accumulating each linear layer's Hessian on its own
     (H = 2/n Σ x xᵀ with n the number of samples, updated per sample as llm-compressor does);
  2. GPTQ each linear layer (int, symmetric, group strategy, act-order "static"/"weight" or none, scales from
     the original weight upfront, dampening fraction of mean(diag H), lazy blocks of `block_size`), float32;
  3. run the block again with the quantized (dequantized) weights: its outputs are the next block's inputs.

Inputs: the model folder (config.json + safetensors, bf16/f16/f32), and a JSON file of token ids written by
the TypeScript side, so both read exactly the same calibration tokens. With --compare OUT, QuantLens' output
(compressed-tensors pack-quantized) is read and each layer's GPTQ objective tr(E H Eᵀ), E = W − Q, is computed
for both results on this script's Hessians.

  python3 scripts/bench/gptq_sequential_torch.py --model DIR --ids ids.json --threads 2 \
      [--group-size 128] [--bits 4] [--actorder static|none] [--dampening-frac 0.01] [--block-size 128] \
      [--compare QUANTLENS_OUTPUT_DIR] [--json RESULT.json]

With --save DIR the model is also written to DIR with every quantized layer's weight replaced by its
dequantized values (float32; every other tensor as float32 too, the config and tokenizer files copied), so
that the same evaluation reads both results as float models; --dequantize-from OUT (with --save, without
--ids) writes QuantLens' output OUT that way instead of running GPTQ (docs/performance.md §6, GPTQ quality).

Needs Debian's python3-torch (1.13) and, for BLAS speed, libopenblas0-pthread. Nothing is written but --json
and --save.
"""
import argparse
import json
import math
import os
import resource
import struct
import sys
import time


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('--model', required=True)
    p.add_argument('--ids', help='JSON: {"samples": [[token ids], ...]} (required unless --dequantize-from)')
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--bits', type=int, default=4)
    p.add_argument('--group-size', type=int, default=128)
    p.add_argument('--actorder', choices=['static', 'weight', 'none'], default='static')
    p.add_argument('--dampening-frac', type=float, default=0.01)
    p.add_argument('--block-size', type=int, default=128)
    p.add_argument('--compare', help="QuantLens' quantized output folder: also its layers' GPTQ objective")
    p.add_argument('--json', help='write the result here')
    p.add_argument('--blocks', type=int, help='stop after this many blocks (quick checks)')
    p.add_argument('--save', help='write the model with each GPTQ layer replaced by its dequantized weights (float32) to this new folder')
    p.add_argument('--dequantize-from', help="with --save and no GPTQ run: write QuantLens' quantized output (this folder) dequantized instead")
    return p.parse_args()


ARGS = parse_args()
# OpenBLAS reads its thread count when it loads: set it before torch is imported.
os.environ.setdefault('OPENBLAS_NUM_THREADS', str(ARGS.threads))
os.environ.setdefault('OMP_NUM_THREADS', str(ARGS.threads))
import numpy as np  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(ARGS.threads)


class Checkpoint:
    """A safetensors checkpoint (one file or sharded with an index), tensors read on demand."""

    DTYPES = {'BF16': (np.uint16, 2), 'F16': (np.float16, 2), 'F32': (np.float32, 4), 'I32': (np.int32, 4), 'I64': (np.int64, 8)}

    def __init__(self, folder):
        self.folder = folder
        index = os.path.join(folder, 'model.safetensors.index.json')
        if os.path.exists(index):
            with open(index) as f:
                weight_map = json.load(f)['weight_map']
            files = sorted(set(weight_map.values()))
        else:
            files = [n for n in sorted(os.listdir(folder)) if n.endswith('.safetensors')]
            if not files:
                raise SystemExit(f'{folder}: no .safetensors file')
        self.where = {}
        for name in files:
            path = os.path.join(folder, name)
            with open(path, 'rb') as f:
                (n,) = struct.unpack('<Q', f.read(8))
                header = json.loads(f.read(n))
            for tensor, entry in header.items():
                if tensor != '__metadata__':
                    self.where[tensor] = (path, 8 + n, entry)

    def __contains__(self, name):
        return name in self.where

    def get(self, name):
        """The tensor as float32 (floats) or its integer dtype."""
        if name not in self.where:
            raise SystemExit(f'{self.folder}: tensor {name} not found')
        path, base, entry = self.where[name]
        dtype = entry['dtype']
        if dtype not in self.DTYPES:
            raise SystemExit(f'{path}: tensor {name} has dtype {dtype}, which this script does not read')
        np_dtype, size = self.DTYPES[dtype]
        start, end = entry['data_offsets']
        count = (end - start) // size
        array = np.fromfile(path, dtype=np_dtype, count=count, offset=base + start).reshape(entry['shape'])
        if dtype == 'BF16':
            return torch.from_numpy((array.astype(np.uint32) << 16).view(np.float32))
        tensor = torch.from_numpy(array.copy())
        return tensor.float() if dtype == 'F16' else tensor


def round_to_bf16(x):
    """Round float32 values to bfloat16 (ties to even) and back: the scales are stored in the model dtype."""
    return x.to(torch.bfloat16).to(torch.float32)


class Llama:
    def __init__(self, folder):
        with open(os.path.join(folder, 'config.json')) as f:
            c = json.load(f)
        if c.get('rope_scaling'):
            raise SystemExit(f'{folder}/config.json: rope_scaling is not supported by this baseline (default RoPE only)')
        self.hidden = c['hidden_size']
        self.heads = c['num_attention_heads']
        self.kv_heads = c['num_key_value_heads']
        self.head_dim = c.get('head_dim') or self.hidden // self.heads
        self.layers = c['num_hidden_layers']
        self.eps = c.get('rms_norm_eps', 1e-6)
        self.theta = c.get('rope_theta', 10000.0)
        self.ckpt = Checkpoint(folder)

    def rope(self, seq_len):
        # float64 angles, as QuantLens' graph builder computes its cos/sin caches.
        inv = 1.0 / (self.theta ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))
        angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv)
        angles = torch.cat([angles, angles], dim=-1)
        return angles.cos().float(), angles.sin().float()

    def block_weights(self, layer):
        p = f'model.layers.{layer}.'
        names = ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.o_proj', 'mlp.gate_proj', 'mlp.up_proj', 'mlp.down_proj']
        linears = {n: self.ckpt.get(p + n + '.weight') for n in names}
        norms = {n: self.ckpt.get(p + n + '.weight') for n in ['input_layernorm', 'post_attention_layernorm']}
        return linears, norms


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def block_forward(model, x, linears, norms, cos, sin, mask, linear):
    """One decoder block on x [1, S, hidden]; `linear(name, input, weight)` computes each projection."""
    S = x.shape[1]
    h = rms_norm(x, norms['input_layernorm'], model.eps)
    q = linear('self_attn.q_proj', h, linears['self_attn.q_proj']).view(1, S, model.heads, model.head_dim).transpose(1, 2)
    k = linear('self_attn.k_proj', h, linears['self_attn.k_proj']).view(1, S, model.kv_heads, model.head_dim).transpose(1, 2)
    v = linear('self_attn.v_proj', h, linears['self_attn.v_proj']).view(1, S, model.kv_heads, model.head_dim).transpose(1, 2)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    group = model.heads // model.kv_heads
    k = k.repeat_interleave(group, dim=1)
    v = v.repeat_interleave(group, dim=1)
    scores = q.matmul(k.transpose(-1, -2)) / math.sqrt(model.head_dim) + mask
    attn = torch.softmax(scores, dim=-1).matmul(v).transpose(1, 2).reshape(1, S, model.heads * model.head_dim)
    x = x + linear('self_attn.o_proj', attn, linears['self_attn.o_proj'])
    h = rms_norm(x, norms['post_attention_layernorm'], model.eps)
    gate = linear('mlp.gate_proj', h, linears['mlp.gate_proj'])
    up = linear('mlp.up_proj', h, linears['mlp.up_proj'])
    return x + linear('mlp.down_proj', torch.nn.functional.silu(gate) * up, linears['mlp.down_proj'])


def plain_linear(_name, x, weight):
    return x.matmul(weight.t())


class HessianTaps:
    """Per-layer Hessians, each accumulated on its own (q/k/v and gate/up too, as llm-compressor's hooks do)."""

    def __init__(self):
        self.H = {}
        self.n = {}

    def __call__(self, name, x, weight):
        inp = x.reshape(-1, x.shape[-1]).float()
        cols = inp.shape[1]
        if name not in self.H:
            self.H[name] = torch.zeros(cols, cols)
            self.n[name] = 0
        n = self.n[name]
        added = x.shape[0]  # samples in this forward (batch), not tokens
        self.H[name] *= n / (n + added)
        n += added
        self.n[name] = n
        inp = math.sqrt(2 / n) * inp
        self.H[name] += inp.t().matmul(inp)
        return x.matmul(weight.t())


def group_scales(W, bits, group_size):
    """Symmetric per-group scales of the original weight, contiguous groups: max|x| / ((qmax − qmin) / 2)."""
    rows, cols = W.shape
    groups = W.view(rows, cols // group_size, group_size)
    lo = groups.amin(-1).clamp(max=0)
    hi = groups.amax(-1).clamp(min=0)
    scale = torch.maximum(lo.abs(), hi) / ((2 ** bits - 1) / 2)
    scale = round_to_bf16(scale)
    return torch.where(scale == 0, torch.full_like(scale, torch.finfo(torch.bfloat16).eps), scale)


def gptq(W0, H0, a):
    """GPTQ of one layer: returns (dequantized weight Q, codes, scales); W0 [out, in] and H0 are not changed."""
    W = W0.clone()
    H = H0.clone()
    rows, cols = W.shape
    qmin, qmax = -(2 ** (a.bits - 1)), 2 ** (a.bits - 1) - 1
    if cols % a.group_size:
        raise SystemExit(f'input size {cols} is not a multiple of the group size {a.group_size}')
    scale = group_scales(W, a.bits, a.group_size)  # upfront, original order
    if a.actorder != 'none':
        perm = torch.argsort(torch.diag(H), descending=True, stable=True)
        W = W[:, perm]
        H = H[perm][:, perm]
    else:
        perm = torch.arange(cols)
    group_of = perm // a.group_size  # the group (in the original order) of each column in quantization order
    dead = torch.diag(H) == 0
    H[dead, dead] = 1
    W[:, dead] = 0
    H += a.dampening_frac * torch.mean(torch.diag(H)) * torch.eye(cols)
    L = torch.linalg.cholesky(H)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
    Q = torch.zeros_like(W)
    codes = torch.zeros(rows, cols, dtype=torch.int8)
    for i1 in range(0, cols, a.block_size):
        i2 = min(i1 + a.block_size, cols)
        W1 = W[:, i1:i2].clone()
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        for i in range(i2 - i1):
            w = W1[:, i]
            d = Hinv1[i, i]
            s = scale[:, group_of[i1 + i]]
            code = torch.round(torch.clamp(w / s, qmin, qmax))
            q = code * s
            Q[:, i1 + i] = q
            codes[:, i1 + i] = code.to(torch.int8)
            err = (w - q) / d
            W1[:, i:] -= err.unsqueeze(1).matmul(Hinv1[i, i:].unsqueeze(0))
            Err1[:, i] = err
        W[:, i2:] -= Err1.matmul(Hinv[i1:i2, i2:])
    inverse = torch.argsort(perm)
    return Q[:, inverse], codes[:, inverse], scale


def objective(W, Q, H):
    """The GPTQ objective tr(E H Eᵀ), E = W − Q, in float64 with the undamped Hessian."""
    E = (W - Q).double()
    return float(((E.matmul(H.double())) * E).sum())


def dequantize_pack_quantized(ckpt, name, bits):
    """QuantLens' stored layer (compressed-tensors pack-quantized, symmetric, per group) as float32."""
    shape = [int(v) for v in ckpt.get(name + '.weight_shape').tolist()]
    packed = ckpt.get(name + '.weight_packed').numpy().view(np.uint32)
    scale = ckpt.get(name + '.weight_scale')
    rows, cols = shape
    per_word = 32 // bits
    fields = np.stack([(packed >> (bits * i)) & ((1 << bits) - 1) for i in range(per_word)], axis=-1).reshape(rows, -1)[:, :cols]
    codes = torch.from_numpy(fields.astype(np.int32) - (1 << (bits - 1))).float()
    if name + '.weight_zero_point' in ckpt:
        raise SystemExit(f'{ckpt.folder}: {name} is asymmetric; this comparison reads symmetric layers only')
    if name + '.weight_g_idx' in ckpt:
        g_idx = ckpt.get(name + '.weight_g_idx').long()
    else:
        g_idx = torch.arange(cols) // (cols // scale.shape[1])
    return codes * scale[:, g_idx]


def save_model(source, folder, replaced):
    """Writes `source`'s tensors (float32; `replaced` maps tensor names to new values) as DIR/model.safetensors
    and copies its other files (config, tokenizer). Refuses an existing folder; writes under a temporary name
    and renames it, so a failed run leaves no half-written model under the final name."""
    import shutil
    if os.path.exists(folder):
        raise SystemExit(f'{folder} already exists; choose a new folder for --save')
    partial = folder + '.partial'
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    for name in sorted(os.listdir(source.folder)):
        path = os.path.join(source.folder, name)
        if os.path.isfile(path) and not name.endswith('.safetensors') and name != 'model.safetensors.index.json':
            shutil.copy(path, os.path.join(partial, name))
    names = sorted(source.where)
    header = {}
    offset = 0
    for name in names:
        shape = replaced[name].shape if name in replaced else source.where[name][2]['shape']
        size = 4 * math.prod(shape)
        dtype = 'F32' if name in replaced or source.where[name][2]['dtype'] in ('BF16', 'F16', 'F32') else source.where[name][2]['dtype']
        if dtype != 'F32':
            size = source.where[name][2]['data_offsets'][1] - source.where[name][2]['data_offsets'][0]
        header[name] = {'dtype': dtype, 'shape': list(shape), 'data_offsets': [offset, offset + size]}
        offset += size
    text = json.dumps(header, separators=(',', ':')).encode('utf8')
    text += b' ' * (-len(text) % 8)
    with open(os.path.join(partial, 'model.safetensors'), 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for name in names:
            value = replaced[name] if name in replaced else source.get(name)
            if header[name]['dtype'] == 'F32':
                f.write(value.float().contiguous().numpy().astype('<f4').tobytes())
            else:
                f.write(value.contiguous().numpy().tobytes())
    os.rename(partial, folder)


def dequantized_output(a):
    """--dequantize-from: QuantLens' quantized linears as float32, every other tensor of the original."""
    model = Llama(a.model)
    ours = Checkpoint(a.dequantize_from)
    replaced = {}
    for layer in range(model.layers):
        linears, _norms = model.block_weights(layer)
        for name in linears:
            full = f'model.layers.{layer}.{name}'
            replaced[full + '.weight'] = dequantize_pack_quantized(ours, full, a.bits)
    save_model(model.ckpt, a.save, replaced)
    print(json.dumps({'saved': a.save, 'from': a.dequantize_from, 'layers': len(replaced)}))


def main():
    a = ARGS
    if a.dequantize_from:
        if not a.save:
            raise SystemExit('--dequantize-from needs --save')
        return dequantized_output(a)
    if not a.ids:
        raise SystemExit('--ids is required (or --dequantize-from with --save)')
    started = time.perf_counter()
    model = Llama(a.model)
    with open(a.ids) as f:
        samples = json.load(f)['samples']
    seq_len = len(samples[0])
    if any(len(s) != seq_len for s in samples):
        raise SystemExit(f'{a.ids}: samples of different lengths (this baseline runs unpadded samples)')
    ours = Checkpoint(a.compare) if a.compare else None
    embed = model.ckpt.get('model.embed_tokens.weight')
    hidden = [embed[torch.tensor(s, dtype=torch.long)].unsqueeze(0) for s in samples]
    del embed
    cos, sin = model.rope(seq_len)
    mask = torch.full((seq_len, seq_len), float('-inf')).triu(1)
    times = {'calibrate': 0.0, 'gptq': 0.0, 'propagate': 0.0}
    layers = []
    saved = {}
    with torch.no_grad():
        for layer in range(min(model.layers, a.blocks or model.layers)):
            linears, norms = model.block_weights(layer)
            t = time.perf_counter()
            taps = HessianTaps()
            for x in hidden:
                block_forward(model, x, linears, norms, cos, sin, mask, taps)
            times['calibrate'] += time.perf_counter() - t
            t = time.perf_counter()
            quantized = {}
            for name, W in linears.items():
                Q, _codes, _scale = gptq(W, taps.H[name], a)
                quantized[name] = Q
            times['gptq'] += time.perf_counter() - t
            t = time.perf_counter()
            hidden = [block_forward(model, x, quantized, norms, cos, sin, mask, plain_linear) for x in hidden]
            times['propagate'] += time.perf_counter() - t
            for name, W in linears.items():
                full = f'model.layers.{layer}.{name}'
                if a.save:
                    saved[full + '.weight'] = quantized[name]
                row = {'layer': full, 'torch': objective(W, quantized[name], taps.H[name])}
                if ours is not None:
                    row['quantlens'] = objective(W, dequantize_pack_quantized(ours, full, a.bits), taps.H[name])
                layers.append(row)
            print(f'block {layer}: {time.perf_counter() - started:.1f} s', file=sys.stderr, flush=True)
    if a.save:
        save_model(model.ckpt, a.save, saved)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {
        'seconds': time.perf_counter() - started,
        'cpu_seconds': usage.ru_utime + usage.ru_stime,
        'phases': times,
        'threads': torch.get_num_threads(),
        'torch': torch.__version__,
        'samples': len(samples),
        'seq_len': seq_len,
        'settings': {'bits': a.bits, 'group_size': a.group_size, 'actorder': a.actorder, 'dampening_frac': a.dampening_frac, 'block_size': a.block_size},
        'layers': layers,
    }
    if ours is not None:
        result['objective_ratio_quantlens_to_torch'] = sum(r['quantlens'] for r in layers) / sum(r['torch'] for r in layers)
    text = json.dumps(result, indent=1)
    if a.json:
        with open(a.json, 'w') as f:
            f.write(text + '\n')
    print(text)


if __name__ == '__main__':
    main()
