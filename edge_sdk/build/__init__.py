"""The model builder (needs the `build` extra: TensorFlow, onnx). Never imported on the frame path."""
