"""Model adapters: the chat-model factory, the llama.cpp server launcher, the embedder and its
ONNX export, and the offline echo model."""
