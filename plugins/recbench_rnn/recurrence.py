"""Recurrences on precomputed input projections, with a hand-written backward pass.

A recurrent layer spends its time in two kinds of work: the input projections
(``W x_t + b`` for every step), which do not depend on the previous state, and the
recurrent part, which does. The input projections of a whole batch are one large matrix
product, computed by the caller before the recurrence starts; only the recurrent part
loops over time.

The loop itself runs inside a :class:`torch.autograd.Function` whose backward pass is
written out by hand (back-propagation through time). Autograd over a Python loop would
record every step's operations and, in the backward pass, compute each step's weight
gradient with its own small matrix product; here the backward loop only carries the
gradient of the state from step to step, and the weight gradients of all steps are
summed at the end in one large matrix product each -- the way cuDNN's fused RNNs work.

Every function here takes time-major tensors (``[T, B, ...]``) whose padding, if any,
comes after the real items of a row (start-aligned rows): a recurrence is causal, so the
padding cannot change the outputs at real positions, and the caller ignores the outputs
at padding positions (their gradient is zero).

Gate layouts
------------
mLSTM
    ``[i, f, o, g]`` (input, forget, output gates, then the candidate), so that one
    ``sigmoid`` covers the three gates.
GRU
    ``[r, z, n]`` (reset, update, candidate), PyTorch's layout, so that the weights load
    into :class:`torch.nn.GRUCell`.
"""

from __future__ import annotations

import math
import weakref
from typing import Any

import torch
from torch import Tensor

_custom_fwd = torch.amp.custom_fwd(device_type="cuda", cast_inputs=torch.float32)
_custom_bwd = torch.amp.custom_bwd(device_type="cuda")


class _Workspace:
    """Large private buffers of the fused recurrences, reused from one call to the next.

    On a CPU a fresh allocation of tens of megabytes comes straight from the operating
    system and page-faults on first write, which costs about as much as the elementwise
    work of a recurrence. The buffers that only the backward pass reads are therefore
    taken from here and given back when the autograd graph that holds them is freed
    (a weak-reference finalizer on a token kept by the graph), so a buffer is never
    handed out twice while in use. On CUDA, PyTorch's caching allocator already does
    this: buffers are plain allocations there.
    """

    KEEP = 2  # buffers kept per (device, dtype): the current graph and the previous one

    def __init__(self) -> None:
        self._free: dict[tuple[torch.device, torch.dtype], list[Tensor]] = {}
        self._largest: dict[tuple[torch.device, torch.dtype], int] = {}

    def take(self, numel: int, like: Tensor) -> Tensor:
        """A flat buffer of at least ``numel`` elements (uninitialised)."""
        if like.device.type != "cpu":
            return like.new_empty(numel)
        key = (like.device, like.dtype)
        free = self._free.setdefault(key, [])
        for index, buffer in enumerate(free):
            if buffer.numel() >= numel:
                return free.pop(index)
        # Batches vary in length: allocate for the largest request so far.
        self._largest[key] = max(numel, self._largest.get(key, 0))
        return like.new_empty(self._largest[key])

    def give(self, buffer: Tensor) -> None:
        if buffer.device.type != "cpu":
            return
        free = self._free.setdefault((buffer.device, buffer.dtype), [])
        free.append(buffer)
        free.sort(key=Tensor.numel, reverse=True)
        del free[self.KEEP :]

    def give_when_freed(self, ctx: Any, buffer: Tensor) -> None:
        """Give ``buffer`` back once the autograd node ``ctx`` is freed."""
        ctx.workspace_token = token = buffer.new_empty(0)
        weakref.finalize(token, self.give, buffer)

    def clear(self) -> None:
        self._free.clear()
        self._largest.clear()


_WORKSPACE = _Workspace()


def release_workspace() -> None:
    """Free the buffers the fused recurrences keep for reuse (after training)."""
    _WORKSPACE.clear()


#: ``length_group_rows`` of the networks whose encoder is a fused ``nn.LSTM``/``nn.GRU``
#: (:class:`recbench.train.trainer.SequenceNetwork`): on a CPU such a layer costs about
#: its longest row's steps whatever the other rows' lengths. At 200 steps and embedding
#: 32 or 120, a batch of 224–256 ML-100K windows encoded in 4 groups took half the
#: time of one call over the padded batch (and the time of 8 groups; 16 took more).
#: The Python-loop recurrences below pay their per-step overhead once per group
#: instead, so their networks leave it unset.
FUSED_LAYER_GROUP_ROWS = 64


def rnn_float32(layer: torch.nn.RNNBase, inputs: Tensor, state: Any = None) -> tuple[Tensor, Any]:
    """``layer(inputs, state)`` for a fused ``nn.LSTM``/``nn.GRU``, in float32 with
    autocast off.

    Under CUDA autocast PyTorch runs the cuDNN RNN in float16 whatever the autocast
    dtype (and no gradient scaler is used here), while the gradients reaching ``h`` are
    ~1e-7 at the default initialisation: below float16's range. The layer is cheap next
    to the scoring products, which stay in bfloat16. Returns ``(outputs, state)`` as the
    layer does, in float32.
    """
    with torch.autocast(device_type=inputs.device.type, enabled=False):
        if state is not None:
            state = tuple(s.float() for s in state) if isinstance(state, tuple) else state.float()
        return layer(inputs.float(), state)  # type: ignore[no-any-return]


def _views(buffer: Tensor, *shapes: tuple[int, ...]) -> list[Tensor]:
    """Consecutive views of ``buffer`` with the given shapes."""
    views, start = [], 0
    for shape in shapes:
        size = math.prod(shape)
        views.append(buffer[start : start + size].view(shape))
        start += size
    return views


# -- multiplicative LSTM ------------------------------------------------------------------


def mlstm_step(
    xm: Tensor,
    xg: Tensor,
    h: Tensor,
    c: Tensor,
    w_mh: Tensor,
    b_mh: Tensor,
    w_gm: Tensor,
) -> tuple[Tensor, Tensor]:
    """One step of the multiplicative LSTM, with autograd (the reference implementation).

    Parameters
    ----------
    xm:
        ``[B, D]``: ``W_mx x_t + b_mx``, the input's factor of the multiplicative state.
    xg:
        ``[B, 4D]``: ``W_gx x_t + b_g``, the input's share of the gate pre-activations.
    h, c:
        ``[B, D]``: the previous hidden and cell states.
    w_mh, b_mh:
        ``[D, D]``, ``[D]``: ``m_t = xm ⊙ (W_mh h_{t-1} + b_mh)``.
    w_gm:
        ``[4D, D]``: the gates' weights on ``m_t`` (in place of ``h_{t-1}``).

    Returns
    -------
    (h, c):
        The new states.
    """
    d = h.shape[-1]
    m = xm * torch.addmm(b_mh, h, w_mh.t())
    gates = torch.addmm(xg, m, w_gm.t())
    sig = torch.sigmoid(gates[:, : 3 * d])
    g = torch.tanh(gates[:, 3 * d :])
    c = sig[:, d : 2 * d] * c + sig[:, :d] * g
    h = sig[:, 2 * d :] * torch.tanh(c)
    return h, c


def mlstm_loop(
    xm: Tensor,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_mh: Tensor,
    b_mh: Tensor,
    w_gm: Tensor,
    output: str = "h",
) -> Tensor:
    """The mLSTM over ``T`` steps with autograd over a Python loop (``[T, B, D]`` out).

    The precomputed projections are split once with ``unbind``: slicing ``xm[t]`` inside
    the loop would make every step's backward materialise a full-size zero gradient.
    """
    h, c = h0, c0
    outputs = []
    for xm_t, xg_t in zip(xm.unbind(0), xg.unbind(0), strict=True):
        h, c = mlstm_step(xm_t, xg_t, h, c, w_mh, b_mh, w_gm)
        outputs.append(h if output == "h" else c)
    return torch.stack(outputs)


def _mlstm_forward(
    xm: Tensor,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_mh: Tensor,
    b_mh: Tensor,
    w_gm: Tensor,
    output_c: bool,
    keep: bool,
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The forward loop of :class:`_FusedMLSTM`; with ``keep`` it also returns what the
    backward pass needs, without it only the output is written (inference)."""
    steps, batch, d = xm.shape
    out_all = xm.new_empty(steps, batch, d)
    workspace = None
    if keep:
        workspace = _WORKSPACE.take(7 * steps * batch * d, xm)
        u_all, sig_all, g_all, state_all = _views(
            workspace, (steps, batch, d), (steps, batch, 3 * d), (steps, batch, d),
            (steps, batch, d),
        )  # fmt: skip
        # u = W_mh h_{t-1} + b_mh; σ of i, f, o; tanh g; the state that is not the output
        c_all = out_all if output_c else state_all
        h_all = state_all if output_c else out_all
    w_mh_t, w_gm_t = w_mh.t(), w_gm.t()
    h, c = h0, c0
    for t in range(steps):
        u = torch.addmm(b_mh, h, w_mh_t, out=u_all[t] if keep else None)
        m = xm[t] * u
        gates = torch.addmm(xg[t], m, w_gm_t)
        sig = torch.sigmoid(gates[:, : 3 * d], out=sig_all[t] if keep else None)
        g = torch.tanh(gates[:, 3 * d :], out=g_all[t] if keep else None)
        c = torch.addcmul(sig[:, d : 2 * d] * c, sig[:, :d], g, out=c_all[t] if keep else None)
        h = torch.mul(sig[:, 2 * d :], torch.tanh(c), out=h_all[t] if keep else None)
        if not keep:
            out_all[t] = c if output_c else h
    if workspace is None:
        return out_all, ()
    return out_all, (workspace, u_all, sig_all, g_all, c_all, h_all)


class _FusedMLSTM(torch.autograd.Function):
    """The mLSTM recurrence with a hand-written backward pass (see the module docstring)."""

    @staticmethod
    @_custom_fwd
    def forward(
        ctx: Any,
        xm: Tensor,
        xg: Tensor,
        h0: Tensor,
        c0: Tensor,
        w_mh: Tensor,
        b_mh: Tensor,
        w_gm: Tensor,
        output_c: bool,
    ) -> Tensor:
        out, (workspace, *saved) = _mlstm_forward(
            xm, xg, h0, c0, w_mh, b_mh, w_gm, output_c, keep=True
        )
        ctx.output_c = output_c
        ctx.save_for_backward(xm, h0, c0, w_mh, w_gm, *saved)
        _WORKSPACE.give_when_freed(ctx, workspace)
        return out

    @staticmethod
    @_custom_bwd
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        xm, h0, c0, w_mh, w_gm, u_all, sig_all, g_all, c_all, h_all = ctx.saved_tensors
        steps, batch, d = xm.shape
        grad_out = grad_out.contiguous()
        d_gates = xm.new_empty(steps, batch, 4 * d)
        d_xm = xm.new_empty(steps, batch, d)
        scratch = _WORKSPACE.take(2 * steps * batch * d, xm)
        d_u, h_prev = _views(scratch, (steps, batch, d), (steps, batch, d))
        d_w_gm = torch.zeros_like(w_gm)
        dh = torch.zeros_like(h0)
        dc = torch.zeros_like(c0)
        one = xm.new_ones(())
        for t in range(steps - 1, -1, -1):
            sig = sig_all[t]
            i, f, o = sig[:, :d], sig[:, d : 2 * d], sig[:, 2 * d :]
            g, tanh_c = g_all[t], torch.tanh(c_all[t])
            c_prev = c_all[t - 1] if t > 0 else c0
            if ctx.output_c:
                dc = dc + grad_out[t]
            else:
                dh = dh + grad_out[t]
            # h_t = o tanh(c_t):  dc += dh o (1 - tanh² c_t)
            dc = torch.addcmul(dc, dh * o, torch.addcmul(one, tanh_c, tanh_c, value=-1))
            # c_t = f c_{t-1} + i g:  gate gradients times σ' = σ (1 - σ), tanh' = 1 - g²
            da = d_gates[t]
            torch.mul(dc, g, out=da[:, :d])
            torch.mul(dc, c_prev, out=da[:, d : 2 * d])
            torch.mul(dh, tanh_c, out=da[:, 2 * d : 3 * d])
            da[:, : 3 * d].mul_(torch.addcmul(sig, sig, sig, value=-1))
            torch.mul(dc * i, torch.addcmul(one, g, g, value=-1), out=da[:, 3 * d :])
            dc = dc * f
            d_w_gm.addmm_(da.t(), xm[t] * u_all[t])
            dm = da @ w_gm
            torch.mul(dm, u_all[t], out=d_xm[t])
            du = torch.mul(dm, xm[t], out=d_u[t])
            dh = du @ w_mh
        flat = steps * batch
        h_prev[0] = h0
        h_prev[1:] = h_all[:-1]
        d_w_mh = d_u.view(flat, d).t() @ h_prev.view(flat, d)
        d_b_mh = d_u.view(flat, d).sum(0)
        _WORKSPACE.give(scratch)
        return d_xm, d_gates, dh, dc, d_w_mh, d_b_mh, d_w_gm, None


def mlstm_fused(
    xm: Tensor,
    xg: Tensor,
    h0: Tensor,
    c0: Tensor,
    w_mh: Tensor,
    b_mh: Tensor,
    w_gm: Tensor,
    output: str = "h",
) -> Tensor:
    """The mLSTM over ``T`` steps with the hand-written backward pass.

    Parameters are those of :func:`mlstm_step` with a leading time axis on ``xm``
    (``[T, B, D]``) and ``xg`` (``[T, B, 4D]``). Returns ``[T, B, D]``: ``h_t`` for
    ``output="h"``, ``c_t`` for ``output="c"``. Under CUDA autocast it runs in float32.
    """
    xm, xg = xm.contiguous(), xg.contiguous()
    if not torch.is_grad_enabled():
        return _mlstm_forward(xm, xg, h0, c0, w_mh, b_mh, w_gm, output == "c", keep=False)[0]
    out: Tensor = _FusedMLSTM.apply(xm, xg, h0, c0, w_mh, b_mh, w_gm, output == "c")
    return out


# -- GRU ---------------------------------------------------------------------------------


def gru_step(x: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """One GRU step on a precomputed input projection, with autograd.

    ``x`` is ``[B, 3H]`` (``W_ih x_t + b_ih``, layout ``[r, z, n]``), ``h`` the previous
    state ``[B, H]``; ``w_hh`` ``[3H, H]`` and ``b_hh`` ``[3H]`` are the recurrent weights.
    The update is PyTorch's (:class:`torch.nn.GRUCell`)::

        r = σ(x_r + W_hr h + b_hr)      z = σ(x_z + W_hz h + b_hz)
        n = tanh(x_n + r ⊙ (W_hn h + b_hn))
        h' = (1 - z) ⊙ n + z ⊙ h
    """
    d = h.shape[-1]
    hh = torch.addmm(b_hh, h, w_hh.t())
    rz = torch.sigmoid(x[:, : 2 * d] + hh[:, : 2 * d])
    n = torch.tanh(torch.addcmul(x[:, 2 * d :], rz[:, :d], hh[:, 2 * d :]))
    return n + rz[:, d:] * (h - n)


def _gru_forward(
    x: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, keep: bool
) -> tuple[Tensor, tuple[Tensor, ...]]:
    """The forward loop of :class:`_FusedGRU`; with ``keep`` it also returns what the
    backward pass needs, without it only the output is written (inference)."""
    steps, batch, three_d = x.shape
    d = three_d // 3
    h_all = x.new_empty(steps, batch, d)
    workspace = None
    if keep:
        workspace = _WORKSPACE.take(6 * steps * batch * d, x)
        # σ of r, z; tanh n; W_hh h_{t-1} + b_hh
        rz_all, n_all, hh_all = _views(
            workspace, (steps, batch, 2 * d), (steps, batch, d), (steps, batch, 3 * d)
        )
    w_hh_t = w_hh.t()
    h = h0
    for t in range(steps):
        hh = torch.addmm(b_hh, h, w_hh_t, out=hh_all[t] if keep else None)
        rz = torch.sigmoid(
            torch.add(x[t, :, : 2 * d], hh[:, : 2 * d]), out=rz_all[t] if keep else None
        )
        n = torch.tanh(
            torch.addcmul(x[t, :, 2 * d :], rz[:, :d], hh[:, 2 * d :]),
            out=n_all[t] if keep else None,
        )
        h = torch.addcmul(n, rz[:, d:], h - n, out=h_all[t])
    if workspace is None:
        return h_all, ()
    return h_all, (workspace, rz_all, n_all, hh_all)


class _FusedGRU(torch.autograd.Function):
    """The GRU recurrence with a hand-written backward pass (see the module docstring)."""

    @staticmethod
    @_custom_fwd
    def forward(ctx: Any, x: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
        h_all, (workspace, *saved) = _gru_forward(x, h0, w_hh, b_hh, keep=True)
        ctx.save_for_backward(h0, w_hh, h_all, *saved)
        _WORKSPACE.give_when_freed(ctx, workspace)
        return h_all

    @staticmethod
    @_custom_bwd
    def backward(ctx: Any, grad_out: Tensor) -> tuple[Tensor | None, ...]:
        h0, w_hh, h_all, rz_all, n_all, hh_all = ctx.saved_tensors
        steps, batch, d = h_all.shape
        grad_out = grad_out.contiguous()
        d_x = h_all.new_empty(steps, batch, 3 * d)
        scratch = _WORKSPACE.take(4 * steps * batch * d, h_all)
        d_hh, h_prev_all = _views(scratch, (steps, batch, 3 * d), (steps, batch, d))
        one = h_all.new_ones(())
        dh = torch.zeros_like(h0)
        for t in range(steps - 1, -1, -1):
            rz, n, hn = rz_all[t], n_all[t], hh_all[t, :, 2 * d :]
            r, z = rz[:, :d], rz[:, d:]
            h_prev = h_all[t - 1] if t > 0 else h0
            dh = dh + grad_out[t]
            # h' = n + z (h - n);  n = tanh(x_n + r hn);  r, z = σ(x + hh)
            dhh = d_hh[t]
            da_n = torch.mul(
                dh - dh * z, torch.addcmul(one, n, n, value=-1), out=d_x[t, :, 2 * d :]
            )
            torch.mul(da_n, hn, out=dhh[:, :d])
            torch.mul(dh, h_prev - n, out=dhh[:, d : 2 * d])
            dhh[:, : 2 * d].mul_(torch.addcmul(rz, rz, rz, value=-1))
            d_x[t, :, : 2 * d].copy_(dhh[:, : 2 * d])
            torch.mul(da_n, r, out=dhh[:, 2 * d :])
            dh = torch.addmm(dh * z, dhh, w_hh)
        flat = steps * batch
        h_prev_all[0] = h0
        h_prev_all[1:] = h_all[:-1]
        d_w_hh = d_hh.view(flat, 3 * d).t() @ h_prev_all.view(flat, d)
        d_b_hh = d_hh.view(flat, 3 * d).sum(0)
        _WORKSPACE.give(scratch)
        return d_x, dh, d_w_hh, d_b_hh


def gru_fused(x: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """The GRU over ``T`` steps (``x``: ``[T, B, 3H]``) with the hand-written backward
    pass; returns ``h_t`` for every step, ``[T, B, H]``. Float32 under CUDA autocast."""
    x = x.contiguous()
    if not torch.is_grad_enabled():
        return _gru_forward(x, h0, w_hh, b_hh, keep=False)[0]
    out: Tensor = _FusedGRU.apply(x, h0, w_hh, b_hh)
    return out


def gru_loop(x: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor) -> Tensor:
    """The GRU over ``T`` steps with autograd over a Python loop (the reference)."""
    h = h0
    outputs = []
    for x_t in x.unbind(0):
        h = gru_step(x_t, h, w_hh, b_hh)
        outputs.append(h)
    return torch.stack(outputs)
