"""An LSTM layer that lowers to plain ops, for training and the step model."""

import tensorflow as tf
import tf_keras as keras

PACKAGE = "tflm_compress"


def fresh_initializer(initializer):
  """A new instance of ``initializer`` (an instance must not serve two weights)."""
  initializer = keras.initializers.get(initializer)
  return initializer.__class__.from_config(initializer.get_config())


@keras.utils.register_keras_serializable(package=PACKAGE)
class LSTM(keras.layers.Layer):
  """Long short-term memory over a sequence, with explicit state in and out.

  Same weights and gate order as ``keras.layers.LSTM`` (i, f, c, o): ``kernel``
  ``[input_dim, 4*units]``, ``recurrent_kernel`` ``[units, 4*units]``,
  ``bias`` ``[4*units]``. Unlike it, the time loop is written with plain ops:
  unrolled when the sequence length is static (the step model has length 1,
  so it lowers to FULLY_CONNECTED and elementwise ops in TFLite, with no WHILE
  and no fused LSTM op), a ``tf.while_loop`` otherwise. The input projection of
  all time steps is one matmul before the loop.

  Subclasses change how ``kernel`` / ``recurrent_kernel`` are stored (low-rank,
  tensor-train, ...) by overriding :meth:`build_kernels`,
  :meth:`input_projection` and :meth:`recurrent_projection`.

  Args:
    units: hidden size ``H``.
    kernel_initializer, recurrent_initializer, bias_initializer: initializers.
    input_dropout, output_dropout: drop rates on ``x`` and on ``outputs``, in
      training only: Zaremba et al.'s dropout on the non-recurrent connections
      (a fresh mask per step and row; the state is never dropped). Fine-tuning
      sets them (``--finetune_dropout``) on models trained without dropout.
    **kwargs: passed to ``keras.layers.Layer``.

  Call arguments:
    inputs: ``[x, h, c]`` with ``x`` float ``[B, T, input_dim]`` and ``h``,
      ``c`` float ``[B, H]``: the state before the first step.
    training: applies the dropouts when true.

  Returns:
    ``[outputs, h, c]``: ``outputs`` ``[B, T, H]`` (h at every step) and the
    state after the last step.

  Example:
    >>> lstm = LSTM(8)
    >>> y, h, c = lstm([tf.zeros([2, 5, 4]), tf.zeros([2, 8]), tf.zeros([2, 8])])
  """

  # The TFLite ops this layer lowers to in the step graph (export.check_exportable).
  tflite_lowering = "FULLY_CONNECTED + elementwise"

  # How :meth:`fused_step` computes the gates: "tanh" (one TANH for all four;
  # exact in float) or "logistic" (three LOGISTICs and a TANH, each gate
  # quantized on its own range: the full-integer int8 export uses this). Set
  # per export by ``export.step_model.make_step_function``; never saved.
  step_gates = "tanh"

  def __init__(self, units: int, kernel_initializer="glorot_uniform",
               recurrent_initializer="orthogonal", bias_initializer="zeros",
               input_dropout: float = 0.0, output_dropout: float = 0.0, **kwargs):
    super().__init__(**kwargs)
    if int(units) <= 0:
      raise ValueError(f"LSTM units={units}; must be > 0")
    for name, rate in (("input_dropout", input_dropout), ("output_dropout", output_dropout)):
      if not 0.0 <= rate < 1.0:
        raise ValueError(f"LSTM {name}={rate}; must be in [0, 1)")
    self.units = int(units)
    self.input_dropout = float(input_dropout)
    self.output_dropout = float(output_dropout)
    self.kernel_initializer = keras.initializers.get(kernel_initializer)
    self.recurrent_initializer = keras.initializers.get(recurrent_initializer)
    self.bias_initializer = keras.initializers.get(bias_initializer)

  def build(self, input_shape):
    x_shape = tf.TensorShape(input_shape[0])
    self.input_dim = int(x_shape[-1])
    self.build_kernels(self.input_dim)
    self.bias = self.add_weight("bias", shape=(4 * self.units,),
                                initializer=self.bias_initializer)
    super().build(input_shape)

  def build_kernels(self, input_dim: int) -> None:
    self.kernel = self.add_weight("kernel", shape=(input_dim, 4 * self.units),
                                  initializer=self.kernel_initializer)
    self.recurrent_kernel = self.add_weight(
        "recurrent_kernel", shape=(self.units, 4 * self.units),
        initializer=self.recurrent_initializer)

  def input_projection(self, x: tf.Tensor) -> tf.Tensor:
    """``x @ kernel`` for ``x`` ``[N, input_dim]`` -> ``[N, 4H]``."""
    return tf.matmul(x, self.kernel)

  def recurrent_projection(self, h: tf.Tensor) -> tf.Tensor:
    """``h @ recurrent_kernel`` for ``h`` ``[B, H]`` -> ``[B, 4H]``."""
    return tf.matmul(h, self.recurrent_kernel)

  def cell(self, z_x: tf.Tensor, h: tf.Tensor, c: tf.Tensor):
    """One step given the input part ``z_x`` ``[B, 4H]`` (bias included)."""
    return self.gates(z_x + self.recurrent_projection(h), c)

  @staticmethod
  def gates(z: tf.Tensor, c: tf.Tensor):
    """``(h, c)`` from the pre-activations ``z`` ``[B, 4H]`` (gate order i, f, g, o)."""
    i, f, g, o = tf.split(z, 4, axis=-1)
    c = tf.sigmoid(f) * c + tf.sigmoid(i) * tf.tanh(g)
    h = tf.sigmoid(o) * tf.tanh(c)
    return h, c

  def _fusable(self) -> bool:
    """True when this class computes the plain ``x @ kernel + h @ recurrent_kernel``."""
    cls = type(self)
    return (cls.input_projection is LSTM.input_projection and
            cls.recurrent_projection is LSTM.recurrent_projection and cls.cell is LSTM.cell)

  def fused_step(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor):
    """One step in the fewest ops: one matmul and one TANH for the four gates.

    The step model (one token, static length 1) takes this path, where the
    fixed cost of each op weighs as much as the arithmetic of a small layer:

    * ``[x, h] @ [kernel; recurrent_kernel] + bias``: one FULLY_CONNECTED
      instead of two;
    * ``sigmoid(z) = 0.5 * tanh(z / 2) + 0.5``: the i, f, o columns of the
      weight and bias are halved, so one TANH over all ``4H`` pre-activations
      and one multiply-add by constant vectors (``[.5, .5, 1, .5]`` and
      ``[.5, .5, 0, .5]`` per gate block) give the three sigmoid gates and
      the ``tanh`` candidate at once, instead of a TANH and three LOGISTICs.

    The weight concatenation and scaling are constant-folded at conversion,
    so each layer is 11 TFLite ops (CONCATENATION, FULLY_CONNECTED, TANH, MUL,
    ADD, SPLIT, then ``c' = f c + i g``, ``h' = o tanh(c')``), all of which
    XNNPACK takes: the stack runs as one delegate partition. Same numbers as
    :meth:`cell` up to float rounding. With ``step_gates = "logistic"`` the
    gates are computed as in :meth:`gates` instead: in full-integer int8 the
    TANH form's extra multiply-add requantizes the sigmoid gates (PTB
    ``small``: int8 test perplexity +1.55% vs +0.67% with LOGISTICs).
    """
    weight = tf.concat([self.kernel, self.recurrent_kernel], axis=0)
    if self.step_gates == "logistic":
      return self.gates(tf.matmul(tf.concat([x, h], axis=-1), weight) + self.bias, c)
    scale, shift = self._gate_affine()
    weight = weight * scale
    z = tf.matmul(tf.concat([x, h], axis=-1), weight) + self.bias * scale
    i, f, g, o = tf.split(tf.tanh(z) * scale + shift, 4, axis=-1)
    c = f * c + i * g
    h = o * tf.tanh(c)
    return h, c

  def _gate_affine(self) -> tuple[tf.Tensor, tf.Tensor]:
    """Per-column ``scale`` and ``shift`` (``[4H]``) turning ``tanh`` into the gates."""
    blocks = tf.constant([[0.5, 0.5, 1.0, 0.5], [0.5, 0.5, 0.0, 0.5]], self.bias.dtype)
    scale, shift = tf.unstack(tf.repeat(blocks, self.units, axis=1))
    return scale, shift

  def call(self, inputs, training=None):
    x, h, c = inputs
    x = _dropout(x, self.input_dropout, training)
    outputs, h, c = self.run_steps(x, h, c)
    return [_dropout(outputs, self.output_dropout, training), h, c]

  def run_steps(self, x: tf.Tensor, h: tf.Tensor, c: tf.Tensor):
    """``[outputs, h, c]`` over the steps of ``x`` (no dropout)."""
    batch = tf.shape(x)[0]
    steps_static = x.shape[1]
    if steps_static == 1:
      # One step (the step model): reshapes only, which fold into each other
      # between layers, instead of slicing x[:, 0] and stacking h[:, None].
      x = tf.reshape(x, [-1, self.input_dim])
      if self._fusable():
        h, c = self.fused_step(x, h, c)
      else:
        h, c = self.cell(self.input_projection(x) + self.bias, h, c)
      return [tf.reshape(h, [-1, 1, self.units]), h, c]
    z_x = self.input_projection(tf.reshape(x, [-1, self.input_dim])) + self.bias
    z_x = tf.reshape(z_x, tf.stack([batch, tf.shape(x)[1], 4 * self.units]))
    if steps_static is not None:
      outputs = []
      for t in range(steps_static):
        h, c = self.cell(z_x[:, t], h, c)
        outputs.append(h)
      return [tf.stack(outputs, axis=1), h, c]
    z_time_major = tf.transpose(z_x, [1, 0, 2])
    steps = tf.shape(z_time_major)[0]
    outputs = tf.TensorArray(x.dtype, size=steps)

    def body(t, h, c, outputs):
      h, c = self.cell(z_time_major[t], h, c)
      return t + 1, h, c, outputs.write(t, h)

    _, h, c, outputs = tf.while_loop(lambda t, *_: t < steps, body, [0, h, c, outputs])
    return [tf.transpose(outputs.stack(), [1, 0, 2]), h, c]

  def compute_output_shape(self, input_shape):
    x_shape = tf.TensorShape(input_shape[0])
    state = tf.TensorShape([x_shape[0], self.units])
    return [tf.TensorShape([x_shape[0], x_shape[1], self.units]), state, state]

  def get_config(self):
    config = super().get_config()
    config.update({
        "units": self.units,
        "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        "recurrent_initializer": keras.initializers.serialize(self.recurrent_initializer),
        "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        "input_dropout": self.input_dropout,
        "output_dropout": self.output_dropout,
    })
    return config


def _dropout(x: tf.Tensor, rate: float, training) -> tf.Tensor:
  if not rate:
    return x
  return keras.backend.in_train_phase(lambda: tf.nn.dropout(x, rate), x, training=training)
