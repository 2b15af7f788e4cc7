import keras
import numpy as np
import pytest

from agegender.recipes import get_recipe
from agegender.sharpness import use_sharpness_aware_steps


def _linear_model():  # two outputs, so that Keras also reports a loss per output
    inputs = keras.Input((2,))
    outputs = {name: keras.layers.Dense(1, use_bias=False, kernel_initializer="ones", name=name)(inputs)
               for name in ("first", "second")}
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss={"first": "mse", "second": "mse"},
                  loss_weights={"first": 1.0, "second": 0.0})
    return model


def test_a_sharpness_aware_step_applies_the_gradient_taken_at_the_steepest_nearby_weights(tmp_path):
    x, y = np.array([[1.0, 2.0], [3.0, -1.0]], "float32"), np.array([[0.5], [1.0]], "float32")
    radius, w = 0.3, np.ones(2)

    def gradient(weights):  # of the mean squared error of x @ weights against y
        return 2 * x.T @ (x @ weights - y.ravel()) / len(x)

    g = gradient(w)
    expected = w - 0.1 * gradient(w + radius * g / np.linalg.norm(g))

    model = _linear_model()
    use_sharpness_aware_steps(model, radius)
    reported = model.train_on_batch(x, {"first": y, "second": y}, return_dict=True)
    assert model.get_layer("first").get_weights()[0].ravel() == pytest.approx(expected, rel=1e-5)
    before = np.mean((x @ w - y.ravel()) ** 2)  # what is reported is the loss at the weights before the step
    assert reported["loss"] == pytest.approx(before, rel=1e-5)
    assert reported["first_loss"] == pytest.approx(before, rel=1e-5)
    plain = _linear_model()
    plain.train_on_batch(x, {"first": y, "second": y})
    assert not np.allclose(plain.get_layer("first").get_weights()[0].ravel(), expected)  # not the plain step

    model.save(tmp_path / "sam.keras")  # the model is still a plain Keras model: it loads without our code
    loaded = keras.models.load_model(tmp_path / "sam.keras", compile=False)
    assert loaded.get_layer("first").get_weights()[0].ravel() == pytest.approx(expected, rel=1e-5)


def test_the_sharpness_radius_is_a_distance():
    assert get_recipe("dlib-resnet").with_overrides(sam_radius=0.05).sam_radius == 0.05
    with pytest.raises(ValueError, match="sam_radius=-0.1"):
        get_recipe("dlib-resnet").with_overrides(sam_radius=-0.1)
