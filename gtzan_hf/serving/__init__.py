"""What the Gradio Space serves: the CPU serving form chosen by calibration (`forms`) and the page's logic (`demo`).
Above the inference layer; no data, training or command-line stack."""
