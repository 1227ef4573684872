"""Building blocks of the Attentive GAN, written in `keras.ops` only."""

from tf_deraindrop.layers.conv_lstm_cell import ConvLSTMCell
from tf_deraindrop.layers.residual_block import ResidualBlock
from tf_deraindrop.layers.upsampling_block import UpsamplingBlock, reflect_pad_average_pool

__all__ = ["ConvLSTMCell", "ResidualBlock", "UpsamplingBlock", "reflect_pad_average_pool"]
