"""Row access for the batched probe trainer (:mod:`probe.batched`): the rows some problem trains on, gathered
or streamed, and the oneDNN / batched-GEMM products of a pass (``_logits``)."""

from __future__ import annotations

from typing import Any, Iterator

import torch

from .features import FeatureSource, TensorFeatures


class _Rows:
    """The rows some problem trains on, as chunks ``(pos, x [L, b, d])`` with ``pos`` indexing
    ``0..n_used-1`` (a slice for in-memory features, an index tensor for a stream).

    In-memory features on CPU with oneDNN: the used rows are copied once (at most 1 GiB), one
    oneDNN-layout block per layer (``self.mk``, built by :meth:`gathered_layers` during the
    statistics pass and used by every later pass). Otherwise, in-memory features where at most
    80% of the rows are used (a sweep without templates trains on its training split only) are
    gathered once into a contiguous copy of the used rows (at most 1 GiB; else every row is
    passed and unused rows get weight 0); streamed chunks drop the unused rows as they arrive.
    For the native solver (``native=True``) no copy is kept: the statistics pass gathers and
    centres one layer at a time, and the solver gathers each layer again (:meth:`gather_layer`)."""

    def __init__(self, feats: FeatureSource, used: torch.Tensor, device: torch.device, chunk_rows: int,
                 passes: bool = True, native: bool = False):
        self.feats, self.device, self.chunk = feats, device, chunk_rows
        used_cpu = used.cpu()
        self.x = None
        self.mk: list[torch.Tensor] | None = None  # per-layer oneDNN copies of the used rows (CPU)
        # the statistics pass gathers the used rows (self.idx) one layer at a time: oneDNN mode (which
        # keeps each layer in self.mk) and the native solver (which keeps nothing and gathers again)
        self.layerwise = False
        self.shift: torch.Tensor | None = None  # [L, 1, d] float64: the rows the passes read are x - shift
        self.stats_shift: torch.Tensor | None = None  # [L, 1, d] float64: the statistics pass's shift
        self.owned = False  # self.x is our copy (gathered, or moved to another device/dtype)
        self.flip = False  # oneDNN passes alternate the layer order; the first runs backwards (see run_pass)
        if isinstance(feats, TensorFeatures):
            x = feats.x
            frac = float(used_cpu.float().mean())
            idx = torch.nonzero(used_cpu).flatten()
            if native:
                self.layerwise, self.idx = True, idx
            elif (passes and device.type == "cpu" and x.device.type == "cpu"
                    and x.numel() * frac * 4 <= _GATHER_MAX_BYTES and _onednn_pass_ok()):
                # a copy of the used rows in oneDNN's layout, one layer at a time, made in the
                # statistics pass (which reads each gathered layer while it is in cache): its
                # products ran ~2x faster per pass than MKL's batched GEMMs, for the price of one copy
                self.layerwise, self.idx, self.mk = True, idx, []
            elif frac <= _GATHER_MAX_FRACTION and x.numel() * frac * 4 <= _GATHER_MAX_BYTES:
                x = x.index_select(1, idx)  # every pass skips the unused rows
            else:
                used_cpu = torch.ones_like(used_cpu)
            if not self.layerwise:
                self.x = x.to(device=device, dtype=torch.float32)
                self.owned = self.x.data_ptr() != feats.x.data_ptr()
        self.used = used_cpu.to(device)
        self.n_used = int(used_cpu.sum())
        self.all = self.n_used == feats.n
        self.pos = torch.full((feats.n,), -1, dtype=torch.long)
        self.pos[used_cpu] = torch.arange(self.n_used)

    def gathered_layers(self) -> Iterator[tuple[int, torch.Tensor]]:
        """Layerwise mode, once: each layer's used rows as a dense ``[n_used, d]`` block (valid until
        the next one; the statistics pass reads it while it is in cache, and may shift it in
        place), then in oneDNN mode kept in oneDNN's layout in ``self.mk``. The statistics pass centres each
        block on its mean (``self.shift``), so the passes multiply centred rows: model
        activations have dimensions with means in the hundreds or thousands, and float32 logits
        ``x.w + b`` of uncentred rows lose most of their digits to the cancellation between
        ``x.w`` and ``b``, which left fits at a noise floor of gradient ~1e-3."""
        x, buf = self.feats.x, torch.empty(self.n_used, self.feats.d)
        self.shift = torch.zeros(x.shape[0], 1, self.feats.d, dtype=torch.float64)
        for layer in range(x.shape[0]):
            self.gather_layer(layer, buf)
            yield layer, buf
            if self.mk is not None:
                self.mk.append(buf.to_mkldnn())

    def gather_layer(self, layer: int, buf: torch.Tensor, shift: torch.Tensor | None = None) -> torch.Tensor:
        """The used rows of one layer into ``buf [n_used, d]`` (float32), minus ``shift [1, d]`` if given."""
        x = self.feats.x
        if x.dtype == torch.float32 and x[layer].is_contiguous():
            torch.index_select(x[layer], 0, self.idx, out=buf)
        else:
            buf.copy_(x[layer].index_select(0, self.idx))
        if shift is not None:
            buf.sub_(shift)
        return buf

    def chunks(self, max_rows: int | None = None) -> Iterator[tuple[Any, torch.Tensor]]:
        if max_rows is not None:
            for pos, x in self.chunks():
                for a in range(0, x.shape[1], max_rows):
                    yield pos[a:a + max_rows] if isinstance(pos, torch.Tensor) else slice(
                        pos.start + a, min(pos.stop, pos.start + a + max_rows)), x[:, a:a + max_rows]
            return
        if self.x is not None:
            for a in range(0, self.n_used, self.chunk):
                b = min(self.n_used, a + self.chunk)
                yield slice(a, b), self.x[:, a:b]
            return
        for idx, x in self.feats.chunks(self.device, self.chunk):
            p = self.pos[idx.cpu()]
            if self.all:
                yield p.to(self.device), x
                continue
            keep = p >= 0
            if not bool(keep.any()):
                continue
            if not bool(keep.all()):
                x = x[:, keep.to(x.device)]
                p = p[keep]
            yield p.to(self.device), x


def _onednn_linear():
    """oneDNN's inner product (``torch.ops.mkldnn._linear_pointwise``, the kernel behind CPU
    ``nn.Linear`` in compiled graphs), or None where this torch build lacks it or disagrees with
    ``baddbmm`` on a small check. Checked once per process."""
    global _ONEDNN
    if _ONEDNN is False:
        try:
            op = torch.ops.mkldnn._linear_pointwise
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(33, 40, generator=g), torch.randn(5, 40, generator=g), torch.randn(5, generator=g))
            ok = torch.allclose(op(x, w, b, "none", [], ""), torch.addmm(b, x, w.T), atol=1e-4, rtol=1e-4)
            _ONEDNN = op if ok else None
        except Exception:  # not built with mkldnn, or the private op changed
            _ONEDNN = None
    return _ONEDNN


_ONEDNN: Any = False  # not checked yet
_ONEDNN_PASS: bool | None = None


def _onednn_pass_ok() -> bool:
    """Whether oneDNN's inner product forward and weight gradient (``aten::mkldnn_linear``,
    ``aten::mkldnn_linear_backward_weights``, on oneDNN-layout row blocks) work here and agree
    with the dense products on a small check. Checked once per process."""
    global _ONEDNN_PASS
    if _ONEDNN_PASS is None:
        try:
            g = torch.Generator().manual_seed(0)
            x, w, b = (torch.randn(37, 40, generator=g), torch.randn(5, 40, generator=g), torch.randn(5, generator=g))
            r = torch.randn(37, 5, generator=g)
            xm = x.to_mkldnn()
            z = torch._C._nn.mkldnn_linear(xm, w, b).to_dense()
            gw, gb = torch.ops.aten.mkldnn_linear_backward_weights(r.to_mkldnn(), xm, w, True)
            _ONEDNN_PASS = bool(torch.allclose(z, torch.addmm(b, x, w.T), atol=1e-4, rtol=1e-4)
                                and torch.allclose(gw.to_dense() if gw.is_mkldnn else gw, r.T @ x, atol=1e-4, rtol=1e-4)
                                and torch.allclose(gb.to_dense() if gb.is_mkldnn else gb, r.sum(0), atol=1e-4, rtol=1e-4))
        except Exception:  # torch built without mkldnn, or the ops changed
            _ONEDNN_PASS = False
    return _ONEDNN_PASS


def _dense(t: torch.Tensor) -> torch.Tensor:
    return t.to_dense() if t.is_mkldnn else t


def _logits(x: torch.Tensor, Wt: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``x [L, r, d] @ Wt[l].T + b`` for every layer -> ``[L, r, N]`` (float32).

    On CPU this is oneDNN's inner product per layer when available: MKL's batched GEMM with a
    narrow output (N = problems x classes, typically 1-32 columns) ran at 20-60 ms per pass over
    30 x 2250 x 576 features for N = 6-15 on one core, oneDNN at about 15 ms for any N up to 32
    (``benchmarks/bench_layer_sweep.py``). Elsewhere (CUDA, no oneDNN, non-contiguous rows): ``baddbmm``."""
    op = _onednn_linear() if x.device.type == "cpu" and x.dtype == torch.float32 else None
    if op is not None and x.shape[1] > 0 and all(x[l].is_contiguous() for l in range(x.shape[0])):
        return torch.stack([op(x[l], Wt[l], b[l].reshape(-1), "none", [], "") for l in range(x.shape[0])])
    return torch.baddbmm(b.reshape(b.shape[0], 1, -1), x, Wt.transpose(1, 2))


_GATHER_MAX_FRACTION = 0.8  # gather the used rows of in-memory features when at most this fraction is used...
_GATHER_MAX_BYTES = 1 << 30  # ...and the copy is at most this big


def _auto_chunk(device: torch.device, feats: FeatureSource) -> int:
    """Rows per chunk of in-memory features: all of them on CPU up to ~2^27 values per layer
    batch (one large batched matmul is faster than many strided ones), 65536 on a GPU."""
    if device.type != "cpu":
        return 65536
    return max(1024, min(feats.n, (1 << 27) // max(1, feats.n_layers * feats.d)))
