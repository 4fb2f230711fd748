"""Does Keras's fit(shuffle=True) visit the data in a new order each epoch, once seeded?

    KERAS_BACKEND=tensorflow python keras_tf_shuffle.py
    KERAS_BACKEND=jax python keras_tf_shuffle.py

Each sample holds its own index; a layer records the first indices of the first batch of each
epoch (run_eagerly=True, so the layer sees the values fit() feeds).
"""

import keras
import numpy as np

seen = []


class Record(keras.layers.Layer):
    def call(self, x):
        try:
            values = np.asarray(x)
        except Exception:  # symbolic while Keras builds the model
            return x
        seen[-1].append(values[:, 0].astype(int).tolist())
        return x


class Epochs(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        seen.append([])


keras.utils.set_random_seed(42)
x = np.arange(1000, dtype="float32").reshape(-1, 1)
y = np.zeros(1000, dtype="float32")
model = keras.Sequential([keras.Input((1,)), Record(), keras.layers.Dense(1)])
model.compile(optimizer="sgd", loss="mse", run_eagerly=True)
model.fit(x, y, batch_size=32, epochs=3, shuffle=True, verbose=0, callbacks=[Epochs()])

print(f"Keras {keras.__version__}, backend {keras.backend.backend()}")
for epoch, batches in enumerate(seen):
    print(f"epoch {epoch}: first batch starts {batches[0][:6]}")
print("same order every epoch:", all(batches == seen[0] for batches in seen))
