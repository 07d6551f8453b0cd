"""`Conv2d`: nn.Conv2d whose small CPU float32 calls run as one matrix product (an exact speedup, `SPEEDUPS`).

oneDNN (mkldnn), which runs torch's CPU convolutions, reorders the weight into its blocked layout on every call; on
the low-resolution levels of the full-size UNet that reorder costs more than the arithmetic. Unfolding the input
(im2col) and multiplying by the weight viewed as (C_out, C_in * kh * kw) reads the weight as it is, which is faster
for small maps in float32 (up to `GEMM_CONV_MAX_PIXELS` output pixels; larger maps and bf16 stay with oneDNN). Same
sums in another order: equal up to float rounding. Measured figures: docs/performance.md ("Exact speedups").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from pbe.models.attention import SPEEDUPS

# Output pixels (batch x height x width) up to which a float32 CPU conv runs as a matrix product.
GEMM_CONV_MAX_PIXELS = 128


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same state-dict keys); with `SPEEDUPS.small_conv_gemm`, CPU float32 calls
    with at most `GEMM_CONV_MAX_PIXELS` output pixels run as unfold + one matrix product (module docstring)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._gemm_applies(x):
            return super().forward(x)
        b, _, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = self.kernel_size, self.stride, self.padding, self.dilation
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        if b * out_h * out_w > GEMM_CONV_MAX_PIXELS:
            return super().forward(x)
        cols = F.unfold(x, self.kernel_size, self.dilation, self.padding, self.stride)  # (B, C_in k k, L)
        y = torch.matmul(self.weight.reshape(self.out_channels, -1), cols)  # (B, C_out, L)
        if self.bias is not None:
            y = y + self.bias[:, None]
        return y.reshape(b, self.out_channels, out_h, out_w)

    def _gemm_applies(self, x: torch.Tensor) -> bool:
        return (
            SPEEDUPS.small_conv_gemm
            and x.ndim == 4
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and self.weight.is_contiguous()  # channels_last weights: the reshape below would copy them per call
            and not torch.is_autocast_enabled("cpu")
            and self.groups == 1
            and self.padding_mode == "zeros"
            and not isinstance(self.padding, str)
        )
