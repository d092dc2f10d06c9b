"""A small byte-level decoder-only transformer and the offline text corpus it trains on.

The model is GPT-2 shaped: token + learned position embeddings, pre-LayerNorm blocks (causal
multi-head self-attention, then a GELU MLP), a final LayerNorm and an untied output head. Linear
layers have no biases (as in Llama and the SPECTRA code's models), so every matrix is a weight
that SPECTRA clips and weight decay shrinks, and every vector is a LayerNorm gain or bias.

The corpus is the Python standard library's own ``*.py`` sources, read from
``sysconfig.get_paths()["stdlib"]`` in sorted path order: real text that is on every machine that
runs this code, with no download. Bytes are the tokens (vocabulary 256).
"""

from __future__ import annotations

import functools
import hashlib
import math
import sysconfig
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

VOCAB = 256
MATRIX_TYPES = ("q", "k", "v", "o", "mlp_in", "mlp_out")
INIT_STD = 0.02  # GPT-2's


def _normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    return std * jax.random.normal(key, shape, jnp.float32)


class LayerNorm(eqx.Module):
    """LayerNorm over the last axis of ``(t, d)`` activations, with gain and bias ``(d,)``."""

    weight: jax.Array
    bias: jax.Array
    eps: float = eqx.field(static=True, default=1e-5)

    def __call__(self, x: jax.Array) -> jax.Array:
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) * jax.lax.rsqrt(var + self.eps) * self.weight + self.bias


def layer_norm(d: int) -> LayerNorm:
    return LayerNorm(jnp.ones(d, jnp.float32), jnp.zeros(d, jnp.float32))


class Linear(eqx.Module):
    """``x @ weight.T`` with ``weight`` of shape ``(out, in)`` (PyTorch's layout)."""

    weight: jax.Array

    def __call__(self, x: jax.Array) -> jax.Array:
        return x @ self.weight.T


class Block(eqx.Module):
    ln_attn: LayerNorm
    q: Linear
    k: Linear
    v: Linear
    o: Linear
    ln_mlp: LayerNorm
    mlp_in: Linear
    mlp_out: Linear
    n_heads: int = eqx.field(static=True)

    def __init__(self, d: int, n_heads: int, mlp_ratio: int, n_layers: int, key: jax.Array):
        if d % n_heads:
            raise ValueError(f"d_model={d} must be divisible by n_heads={n_heads}.")
        keys = jax.random.split(key, 6)
        # Residual-branch outputs scaled by 1/sqrt(2 n_layers), as in GPT-2.
        out_std = INIT_STD / math.sqrt(2 * n_layers)
        self.ln_attn = layer_norm(d)
        self.q = Linear(_normal(keys[0], (d, d), INIT_STD))
        self.k = Linear(_normal(keys[1], (d, d), INIT_STD))
        self.v = Linear(_normal(keys[2], (d, d), INIT_STD))
        self.o = Linear(_normal(keys[3], (d, d), out_std))
        self.ln_mlp = layer_norm(d)
        self.mlp_in = Linear(_normal(keys[4], (mlp_ratio * d, d), INIT_STD))
        self.mlp_out = Linear(_normal(keys[5], (d, mlp_ratio * d), out_std))
        self.n_heads = n_heads

    def attention(self, x: jax.Array) -> jax.Array:
        """Causal multi-head self-attention of ``(t, d)`` activations."""
        t, d = x.shape
        dh = d // self.n_heads
        q, k, v = (f(x).reshape(t, self.n_heads, dh) for f in (self.q, self.k, self.v))
        scores = jnp.einsum("thd,shd->hts", q, k) / math.sqrt(dh)
        causal = jnp.tril(jnp.ones((t, t), dtype=bool))
        scores = jnp.where(causal, scores, -jnp.inf)
        weights = jax.nn.softmax(scores, axis=-1)
        return self.o(jnp.einsum("hts,shd->thd", weights, v).reshape(t, d))

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention(self.ln_attn(x))
        return x + self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln_mlp(x))))


class Transformer(eqx.Module):
    """Byte-level decoder-only transformer; every leaf is a float32 array (a parameter)."""

    tok_emb: jax.Array
    pos_emb: jax.Array
    blocks: tuple[Block, ...]
    ln_final: LayerNorm
    head: Linear

    def __init__(
        self,
        d_model: int,
        n_layers: int,
        n_heads: int,
        seq_len: int,
        mlp_ratio: int,
        key: jax.Array,
    ):
        k_tok, k_pos, k_head, k_blocks = jax.random.split(key, 4)
        self.tok_emb = _normal(k_tok, (VOCAB, d_model), INIT_STD)
        self.pos_emb = _normal(k_pos, (seq_len, d_model), INIT_STD)
        self.blocks = tuple(
            Block(d_model, n_heads, mlp_ratio, n_layers, k)
            for k in jax.random.split(k_blocks, n_layers)
        )
        self.ln_final = layer_norm(d_model)
        self.head = Linear(_normal(k_head, (VOCAB, d_model), INIT_STD))

    def __call__(self, tokens: jax.Array) -> jax.Array:
        """Logits ``(t, 256)`` for one sequence of ``t <= seq_len`` byte tokens."""
        x = self.tok_emb[tokens] + self.pos_emb[: tokens.shape[0]]
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_final(x))

    def named_matrices(self) -> dict[str, jax.Array]:
        """Every weight matrix: ``embed.tok``, ``embed.pos``, ``head.out``, ``L<i>.<type>``."""
        out = {"embed.tok": self.tok_emb, "embed.pos": self.pos_emb, "head.out": self.head.weight}
        for i, block in enumerate(self.blocks):
            for name in MATRIX_TYPES:
                out[f"L{i}.{name}"] = getattr(block, name).weight
        return out


def next_byte_loss(model: Transformer, windows: jax.Array) -> jax.Array:
    """Mean cross-entropy (nats) of predicting ``windows[:, 1:]`` from ``windows[:, :-1]``."""
    inputs, targets = windows[:, :-1], windows[:, 1:]
    logits = jax.vmap(model)(inputs).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.take_along_axis(logp, targets[..., None], axis=-1).mean()


@functools.cache
def stdlib_files() -> tuple[Path, ...]:
    """The standard library's ``*.py`` files, sorted by relative path (no site-packages)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    skip = {"site-packages", "dist-packages", "__pycache__"}
    files = [p for p in root.rglob("*.py") if not skip & set(p.relative_to(root).parts)]
    return tuple(sorted(files, key=lambda p: p.relative_to(root).as_posix()))


@functools.lru_cache(maxsize=4)
def load_corpus(budget_bytes: int, val_bytes: int) -> tuple[np.ndarray, np.ndarray, str]:
    """``(train, val, sha1)``: the first ``budget_bytes`` of the concatenated stdlib sources.

    The validation set is the contiguous tail of ``val_bytes`` (other files than most of the
    training set: files are concatenated in sorted path order). Cached, so every compile of
    ``run`` reuses one copy.
    """
    if not 0 < val_bytes < budget_bytes:
        raise ValueError(f"Need 0 < val_bytes < budget_bytes, got {val_bytes}, {budget_bytes}.")
    chunks, total = [], 0
    for path in stdlib_files():
        data = path.read_bytes() + b"\n"
        chunks.append(data)
        total += len(data)
        if total >= budget_bytes:
            break
    corpus = np.frombuffer(b"".join(chunks)[:budget_bytes], dtype=np.uint8)
    if corpus.size < budget_bytes:
        raise ValueError(f"The stdlib holds only {corpus.size} bytes of *.py, < {budget_bytes}.")
    digest = hashlib.sha1(corpus.tobytes()).hexdigest()[:12]
    return corpus[:-val_bytes], corpus[-val_bytes:], digest
