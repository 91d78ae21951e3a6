"""Experiments: one module per figure or claim group; ``python -m experiments`` runs them."""

EXPERIMENTS: tuple[str, ...] = (
    "bunny",
    "stability_regions",
    "resnet_euler",
    "receptive_field",
    "jacobian_spectra",
    "gradient_depth",
    "scaled_residual",
    "highway_gate",
    "lesion",
    "depth_as_time",
    "deq_banach",
    "stiffness",
    "implicit_euler_gpt",
    "cnf_density",
    "chen_table",
    "memory_depth",
    "step_size_stability",
    "euler_quartic",
    "walking_styles",
    "basins",
    "simplex_walks",
    "kl_bregman",
)
"""Registered experiments, in run order (module names under ``experiments/``)."""
