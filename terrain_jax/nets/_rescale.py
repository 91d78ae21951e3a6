"""Function-preserving reparameterisations of ReLU networks (Dinh et al. 2017)."""

import equinox as eqx


def rescale_relu_layer(mlp: eqx.nn.MLP, alpha: float, *, layer: int = 0) -> eqx.nn.MLP:
    """Dinh et al.'s move: layer ``layer``'s weight and bias ×α, the next layer's weight ÷α.

    For a positively homogeneous activation (ReLU: ``σ(αu) = ασ(u)`` for ``α > 0``) every
    unit of the following layer sees the same input, so the function is unchanged while
    the curvature of the loss in the parameters (sharpness, Hessian spectrum) is not:
    flatness measured in raw parameters is not a property of the function.
    """
    first, second = mlp.layers[layer], mlp.layers[layer + 1]
    return eqx.tree_at(
        lambda m: (m.layers[layer].weight, m.layers[layer].bias, m.layers[layer + 1].weight),
        mlp,
        (alpha * first.weight, alpha * first.bias, second.weight / alpha),
    )
