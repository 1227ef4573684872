"""Fine-tuning: starting a run from given weights, and training one part of the generator.

`--init-generator` takes the authors' `gen.pkl`, a `generator.keras` or a
`.weights.h5`; `--init-discriminator` a `.keras` or `.weights.h5` of a
discriminator of the same crop size. They are read once, when the run starts
from step 0: a resumed run continues from its own checkpoint and does not
import them again (the saved configuration keeps their names, for the record).
"""

from __future__ import annotations

import os

from tf_deraindrop.training.config import TrainConfig


class InitWeightsError(ValueError):
    """An --init-generator / --init-discriminator file that cannot be used; names the file."""


def _discriminator_weights(path: str, crop_size: int) -> list:
    import keras

    from tf_deraindrop.models import Discriminator

    if not os.path.isfile(path):
        raise InitWeightsError(f"--init-discriminator: {path}: no such file")
    try:
        if path.endswith(".keras"):
            model = keras.models.load_model(path, compile=False)
            model = getattr(model, "discriminator", model)
            if not isinstance(model, Discriminator):
                raise ValueError(f"it holds a {type(model).__name__}, not a Discriminator")
        else:
            model = Discriminator(crop_size=crop_size)
            model.build((None, crop_size, crop_size, 3))
            model.load_weights(path)
    except InitWeightsError:
        raise
    except Exception as err:  # noqa: BLE001 - any reason to fail is reported with the file
        raise InitWeightsError(f"--init-discriminator: {path}: {err}") from err
    if getattr(model, "crop_size", crop_size) != crop_size:
        raise InitWeightsError(
            f"--init-discriminator: {path} was built for crop {model.crop_size}, "
            f"this run uses --crop-size {crop_size}."
        )
    return model.get_weights()


class InitialWeights:
    """The starting weights a run asked for, read once and put into the networks.

    Args:
        config: the run's settings (`init_generator`, `init_discriminator`, `crop_size`).

    Example:
        >>> init = InitialWeights(config)  # doctest: +SKIP
        >>> init.load()  # before any data is read: a bad file fails fast
        >>> init.apply(gan)  # only when the run starts from step 0
    """

    def __init__(self, config: TrainConfig):
        self.config = config
        self.generator: list | None = None
        self.discriminator: list | None = None

    @property
    def requested(self) -> bool:
        return bool(self.config.init_generator or self.config.init_discriminator)

    def load(self) -> None:
        """Reads the files (errors name the file and flag).

        Raises:
            InitWeightsError: a missing file, not a generator or discriminator,
                or shapes that differ.
        """
        from tf_deraindrop.inference.loading import WeightsError, load_generator_weights

        if self.config.init_generator and self.generator is None:
            try:
                model = load_generator_weights(self.config.init_generator)
            except WeightsError as err:
                raise InitWeightsError(f"--init-generator: {err}") from err
            self.generator = model.get_weights()
        if self.config.init_discriminator and self.discriminator is None:
            self.discriminator = _discriminator_weights(
                self.config.init_discriminator, self.config.crop_size
            )

    def apply(self, gan) -> list[str]:
        """Sets the networks of `gan` to the starting weights; returns what was set, for the log."""
        self.load()
        done = []
        for name, weights, network in (
            ("generator", self.generator, gan.generator),
            ("discriminator", self.discriminator, gan.discriminator),
        ):
            if weights is None:
                continue
            try:
                network.set_weights(weights)
            except ValueError as err:
                raise InitWeightsError(
                    f"--init-{name}: the weights do not fit this run's {name} ({err})"
                ) from err
            done.append(name)
        return done


def freeze_part(generator, part: str | None) -> None:
    """Makes one part of the generator untrainable, so that only the other part learns.

    Args:
        generator: a generator with `part_layers` (`Generator`).
        part: "attention", "autoencoder", or None (train everything).
    """
    if part is None:
        return
    if not hasattr(generator, "part_layers"):
        raise InitWeightsError(f"--freeze: a {type(generator).__name__} has no separable parts.")
    for layer in generator.part_layers(part):
        layer.trainable = False
