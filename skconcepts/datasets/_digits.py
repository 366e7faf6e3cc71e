"""A small real activation set: the hidden layer of an MLP on digits."""

import numpy as np

__all__ = ["LinearHead", "load_digits_activations"]


# ---------------------------------------------------------------------------
# A small real activation set: the hidden layer of an MLP on digits.


class LinearHead:
    """A linear read-out ``a -> a @ coef + intercept`` (picklable).

    The head that :func:`load_digits_activations` returns: the output layer
    of the network, mapping hidden activations to class logits.

    Parameters
    ----------
    coef : ndarray of shape (n_features, n_outputs)
        Weights.
    intercept : ndarray of shape (n_outputs,)
        Biases.

    Attributes
    ----------
    coef : ndarray of shape (n_features, n_outputs)
        The weights, as an array.
    intercept : ndarray of shape (n_outputs,)
        The biases, as an array.

    Examples
    --------
    >>> import numpy as np
    >>> from skconcepts.datasets import LinearHead
    >>> LinearHead(np.eye(2), np.array([0.0, 1.0]))(np.array([[2.0, 3.0]]))
    array([[2., 4.]])
    """

    def __init__(self, coef, intercept):
        self.coef = np.asarray(coef)
        self.intercept = np.asarray(intercept)

    def __call__(self, a):
        """Logits of the activations ``a`` (an array of shape (n, n_features))."""
        return np.asarray(a) @ self.coef + self.intercept


def load_digits_activations(
    *, hidden_layer_sizes=(64,), test_size=0.3, max_iter=300, random_state=0
):
    """Hidden ReLU activations of a small MLP trained on scikit-learn's digits.

    A real activation set that needs no download: an ``MLPClassifier`` is
    trained on the 8x8 digits (pixels scaled to [0, 1]) and cut after its last
    hidden layer. The activations are non-negative (ReLU), as CRAFT's NMF
    needs; ``head`` is the rest of the network (the output layer's logits).
    Takes a few seconds on a CPU.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default=(64,)
        Hidden layers of the MLP; the activations are those of the last one.
    test_size : float, default=0.3
        Fraction of the images held out (stratified split).
    max_iter : int, default=300
        Training epochs of the MLP (convergence warnings are silenced).
    random_state : int, default=0
        Seed of the split and of the MLP.

    Returns
    -------
    data : sklearn.utils.Bunch
        ``A_train``, ``A_test`` (activations), ``X_train``, ``X_test``
        (pixels), ``y_train``, ``y_test`` (digit labels), ``images_train``,
        ``images_test`` (8x8 images), ``model`` (the fitted MLP),
        ``hidden`` (callable: pixels -> activations) and ``head``
        (a :class:`LinearHead`: activations -> 10 logits).

    Examples
    --------
    >>> from skconcepts.datasets import load_digits_activations
    >>> d = load_digits_activations()
    >>> d.A_train.shape, bool(d.A_train.min() >= 0)
    ((1257, 64), True)
    >>> acc = (d.head(d.A_test).argmax(1) == d.y_test).mean()
    >>> bool(acc > 0.9)
    True
    """
    import warnings

    from sklearn.datasets import load_digits
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier
    from sklearn.utils import Bunch

    digits = load_digits()
    X, y = digits.data / 16.0, digits.target
    X_train, X_test, y_train, y_test, img_train, img_test = train_test_split(
        X, y, digits.images, test_size=test_size, random_state=random_state, stratify=y
    )
    mlp = MLPClassifier(
        hidden_layer_sizes=hidden_layer_sizes,
        max_iter=max_iter,
        random_state=random_state,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        mlp.fit(X_train, y_train)

    def hidden(x):
        a = np.asarray(x, dtype=np.float64)
        for W, b in zip(mlp.coefs_[:-1], mlp.intercepts_[:-1], strict=True):
            a = np.maximum(a @ W + b, 0.0)
        return a

    return Bunch(
        A_train=hidden(X_train),
        A_test=hidden(X_test),
        X_train=X_train,
        X_test=X_test,
        y_train=y_train,
        y_test=y_test,
        images_train=img_train,
        images_test=img_test,
        model=mlp,
        hidden=hidden,
        head=LinearHead(mlp.coefs_[-1], mlp.intercepts_[-1]),
    )
