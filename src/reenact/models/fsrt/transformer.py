"""Pre-norm transformer blocks of SRT/FSRT (Sajjadi et al. 2022, Sec. 3; Rochow et al. 2024, Sec. 3.1, Fig. 2).

The layout follows the ViT-style transformer that the official SRT/FSRT code uses, so parameter names equal
the released checkpoints' (``layers.{i}.0.norm``, ``layers.{i}.0.fn.to_qkv`` / ``to_q`` / ``to_kv``,
``layers.{i}.0.fn.to_out.0``, ``layers.{i}.1.fn.net.0`` / ``net.3``):

* block ``i`` = ``[PreNorm(Attention), PreNorm(FeedForward)]`` with residual connections around both;
* self-attention projects ``x`` to ``q, k, v`` with one bias-free linear (``to_qkv``); cross-attention
  projects the queries with ``to_q`` and the set-latent tokens with ``to_kv`` (both bias-free); the set-latent
  tokens are not normalised (the released decoder has no norm for them);
* the feed-forward net is ``Linear -> GELU -> Dropout -> Linear -> Dropout`` (hence ``net.0`` and ``net.3``).

Attention itself is :func:`torch.nn.functional.scaled_dot_product_attention`, i.e. exactly
``softmax(q k^T / sqrt(d_head)) v``; it is the fused kernel of the same formula.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """Multi-head attention ``[B, N, dim] -> [B, N, dim]``, self- (``z=None``) or cross-attention to ``z``.

    Args:
        dim: token width of the queries (and of the output).
        heads, dim_head: ``heads * dim_head`` is the inner width.
        self_attention: one ``to_qkv`` projection (encoder) instead of ``to_q`` + ``to_kv`` (decoder).
        kv_dim: width of the cross-attended tokens ``z`` (decoder: the set-latent width).
        dropout: dropout after the output projection (0 in FSRT).
    """

    def __init__(self, dim: int, heads: int, dim_head: int, self_attention: bool = True, kv_dim: int | None = None,
                 dropout: float = 0.0):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.self_attention = self_attention
        if self_attention:
            self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        else:
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(kv_dim if kv_dim is not None else dim, 2 * inner, bias=False)
        # SRT keeps the output projection unless it would be the identity (1 head of full width); FSRT never is.
        self.to_out = (nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
                       if not (heads == 1 and dim_head == dim) else nn.Identity())

    def _split(self, t: Tensor) -> Tensor:
        b, n, _ = t.shape
        return t.reshape(b, n, self.heads, -1).transpose(1, 2)  # [B, h, N, d]

    def keys_values(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """Cross-attention keys and values ``[B, h, N_z, d]`` of the set-latent tokens ``z [B, N_z, kv_dim]``.

        Computed once per source set and reused for every chunk of query pixels (see
        :meth:`FSRTDecoder.forward <reenact.models.fsrt.torch_model.FSRTDecoder.forward>`).
        """
        k, v = self.to_kv(z).chunk(2, dim=-1)
        return self._split(k), self._split(v)

    def forward(self, x: Tensor, z: Tensor | None = None, kv: tuple[Tensor, Tensor] | None = None) -> Tensor:
        if self.self_attention:
            q, k, v = (self._split(t) for t in self.to_qkv(x).chunk(3, dim=-1))
        else:
            q = self._split(self.to_q(x))
            if kv is None:
                if z is None:
                    raise ValueError("cross-attention needs the set-latent tokens z (or their keys/values)")
                kv = self.keys_values(z)
            k, v = kv
            if k.shape[0] != q.shape[0]:
                # One source set attended by several query batches (e.g. frames): broadcast, no copy.
                k = k.expand(q.shape[0], -1, -1, -1)
                v = v.expand(q.shape[0], -1, -1, -1)
        out = F.scaled_dot_product_attention(q, k, v)  # softmax(q k^T / sqrt(d)) v
        out = out.transpose(1, 2).flatten(2)
        return self.to_out(out)


class FeedForward(nn.Module):
    """``Linear(dim, hidden) -> GELU -> Dropout -> Linear(hidden, dim) -> Dropout`` (names ``net.0``, ``net.3``)."""

    def __init__(self, dim: int, hidden_dim: int, dropout: float = 0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x), **kwargs)`` (names ``norm``, ``fn``)."""

    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: Tensor, **kwargs: object) -> Tensor:
        return self.fn(self.norm(x), **kwargs)


class Transformer(nn.Module):
    """``depth`` pre-norm blocks ``x = attn(x) + x; x = ff(x) + x`` (SRT encoder / decoder transformer).

    Args:
        dim: token width.
        depth: number of blocks (FSRT encoder 5, decoder 2).
        heads, dim_head: attention heads and their width (FSRT: 12 x 64; small decoder 6 x 64).
        mlp_dim: feed-forward hidden width (FSRT: 1536; small decoder 768).
        self_attention: encoder (True) or decoder cross-attention to the set-latent tokens (False).
        kv_dim: width of the set-latent tokens for cross-attention.

    Forward: ``x [B, N, dim]`` (+ ``z [B, N_z, kv_dim]`` or precomputed ``kv`` for cross-attention) ->
    ``[B, N, dim]``.
    """

    def __init__(self, dim: int, depth: int, heads: int, dim_head: int, mlp_dim: int, self_attention: bool = True,
                 kv_dim: int | None = None, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList([
            nn.ModuleList([
                PreNorm(dim, Attention(dim, heads, dim_head, self_attention=self_attention, kv_dim=kv_dim,
                                       dropout=dropout)),
                PreNorm(dim, FeedForward(dim, mlp_dim, dropout=dropout)),
            ])
            for _ in range(depth)
        ])

    def keys_values(self, z: Tensor) -> list[tuple[Tensor, Tensor]]:
        """Per-block cross-attention keys/values of ``z`` (decoder only), for reuse across query chunks."""
        return [attn.fn.keys_values(z) for attn, _ in self.layers]

    def forward(self, x: Tensor, z: Tensor | None = None, kv: list[tuple[Tensor, Tensor]] | None = None) -> Tensor:
        for i, (attn, ff) in enumerate(self.layers):
            attended = attn(x) if attn.fn.self_attention else attn(x, z=z, kv=None if kv is None else kv[i])
            x = attended + x
            x = ff(x) + x
        return x
