"""The GAN a run trains: networks, perceptual loss and optimizers, then its restored state."""

from __future__ import annotations

import os

from tf_deraindrop.training.config import TrainConfig


class TrainError(RuntimeError):
    """A run that cannot go on (bad resume, data that cannot be read); a clear message."""


def make_perceptual(config: TrainConfig, demo: bool):
    """The perceptual loss and a note for the record, or None (demo without weights, or off)."""
    from tf_deraindrop.losses import PerceptualLoss, VGGWeightsError

    weights = config.vgg_weights
    if weights.lower() == "none":
        return None, "off (--vgg-weights none)"
    try:
        return PerceptualLoss(weights=weights), f"on (VGG16 {weights})"
    except VGGWeightsError as err:
        if not demo:
            raise
        print(
            "NOTE: the VGG16 ImageNet weights cannot be had here, so this demo trains "
            "WITHOUT the perceptual loss L_P. (" + str(err).split(". Without")[0] + ")",
            flush=True,
        )
        return None, "off (demo: VGG16 ImageNet weights unavailable)"


def learning_rate(lr: float, config):
    """`lr`, or its staircase decay when `config.lr_decay_steps` is set (`lr_decay_rate` each)."""
    import keras

    if config.lr_decay_steps:
        lr = keras.optimizers.schedules.ExponentialDecay(
            lr, config.lr_decay_steps, config.lr_decay_rate, staircase=True
        )
    return lr


def _optimizer(lr: float, config: TrainConfig, name: str):
    import keras

    return keras.optimizers.Adam(
        learning_rate(lr, config), beta_1=config.beta_1, beta_2=config.beta_2, name=name
    )


def _lite_generator(config: TrainConfig):
    from tf_deraindrop.models import LiteGenerator
    from tf_deraindrop.training.config import ConfigError

    try:
        return LiteGenerator.from_preset(config.lite_preset)
    except ValueError as err:
        raise ConfigError(f"--lite-preset: {err}") from err


def build_gan(config: TrainConfig, demo: bool):
    """The compiled `AttentiveGAN` (call inside the strategy's scope and precision policy).

    Returns:
        `(gan, perceptual_note)`.
    """
    from tf_deraindrop.models import Discriminator, Generator
    from tf_deraindrop.training.finetune import freeze_part
    from tf_deraindrop.training.gan import AttentiveGAN

    perceptual, note = make_perceptual(config, demo)
    generator = Generator() if config.generator == "full" else _lite_generator(config)
    # Before compile: the optimizer is built for the trainable variables only.
    freeze_part(generator, config.freeze)
    gan = AttentiveGAN(generator, Discriminator(crop_size=config.crop_size), perceptual)
    gan.compile(
        _optimizer(config.g_lr, config, "g_adam"),
        _optimizer(config.d_lr, config, "d_adam"),
        theta=config.theta,
        lambdas=config.lambdas,
        gan_weight=config.gan_weight,
        gamma=config.gamma,
        perceptual_weight=config.perceptual_weight,
        saturating_gan=config.saturating_gan,
        jit_compile=config.jit_compile,
    )
    return gan, note


def restore(gan, config: TrainConfig, directory: str, init, resume: bool | None = None) -> int:
    """Restores the newest usable checkpoint into `gan`; returns the step it starts at.

    With nothing to restore, the run starts at step 0 from `init`'s weights
    (`finetune.InitialWeights`), if it names any.
    """
    from tf_deraindrop.training.checkpoints import ResumeError, restore_run, start_over
    from tf_deraindrop.training.gan import has_named_weights

    def matching(prefix: str):
        return gan.checkpoint(named_weights=has_named_weights(prefix))

    if resume is False:
        start_over(directory)  # a NaN stop with no checkpoint leaves only its record
    try:
        restored = restore_run(matching, directory) if resume is not False else None
    except ResumeError as err:
        raise TrainError(str(err)) from err
    if restored is not None and config.freeze and not has_named_weights(restored):
        raise TrainError(
            f"cannot resume from {restored}: it was written before checkpoints kept every "
            f"weight, and the frozen {config.freeze} part's weights are not in it. Start a "
            "new run (another --out-dir) with the same --init-* and --freeze flags."
        )
    if restored is None:
        for name in init.apply(gan):
            print(f"Starting the {name} from {getattr(config, 'init_' + name)}.", flush=True)
        return 0
    if init.requested:
        print(f"Resuming from {os.path.basename(restored)}; --init-* weights not re-imported.")
    if not config.lr_decay_steps:
        # A changed learning rate wins over the saved one.
        gan.g_optimizer.learning_rate = config.g_lr
        gan.d_optimizer.learning_rate = config.d_lr
    return int(gan.global_step.numpy())
