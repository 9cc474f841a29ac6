"""Student-style point models for Level 0's calibration, each written independently of the reference."""

POINT_ZOO = {
    "mlp_concat": "an MLP (3 x 128, ReLU) on the point joined to t / T",
    "mlp_silu": "an MLP (3 x 128, SiLU) on the point joined to t / T",
    "mlp_gelu_narrow": "an MLP (3 x 64, GELU) on the point joined to t / T",
    "mlp_sinusoidal": "an MLP (3 x 128, SiLU) on the point joined to a sinusoidal embedding of t",
    "fourier_mlp": "Fourier features of the point and of t, a residual MLP (3 x 128, SiLU)",
}
