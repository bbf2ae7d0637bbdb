"""BERT encoders in plain torch: most served embedding models, without importing transformers.

all-MiniLM-L6-v2, the BERT-base and BERT-large shapes and most sentence-transformers models are
BERT encoders. Serving them through transformers costs its import (`transformers.modeling_utils`
pulls torch.distributed, dynamo, SciPy and its quantisation integrations: 3.6 s on the development
machine beside torch's 1.3 s, most of the 10 s a GPU server spent importing before its first worker
forked, bench/inference.md). The encoder itself is a few dozen lines of torch: embeddings (word +
token type + position, LayerNorm), then per layer a fused query-key-value projection,
`scaled_dot_product_attention` under the padding mask, the output projection and LayerNorm, the GELU
feed-forward and LayerNorm (post-LN, as BERT is), in the order transformers' `BertModel` adds them.

It is called as a transformers model is (`model(**inputs, return_dict=True).last_hidden_state`),
so the same `PlainChain` pools and normalises it, and its forward pass has no host synchronisation
and no branch on tensor values: CUDA graphs capture it as they capture transformers' BERT.
`bert_files.bert_plan` decides which folders it serves; tests/inference/test_bert_encoder.py
checks its embeddings against sentence-transformers and transformers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from safetensors import safe_open
from torch import nn

from inference.models.bert_files import BertFiles, BertShape


@dataclass(frozen=True)
class EncoderOutput:
    last_hidden_state: torch.Tensor


class _Layer(nn.Module):
    def __init__(self, shape: BertShape, device: str) -> None:
        super().__init__()
        h, eps, i = shape.hidden_size, shape.layer_norm_eps, shape.intermediate_size
        self.heads = shape.num_attention_heads
        self.act = shape.hidden_act
        self.qkv = nn.Linear(h, 3 * h, device=device)
        self.attention_out = nn.Linear(h, h, device=device)
        self.attention_norm = nn.LayerNorm(h, eps=eps, device=device)
        self.intermediate = nn.Linear(h, i, device=device)
        self.output = nn.Linear(i, h, device=device)
        self.output_norm = nn.LayerNorm(h, eps=eps, device=device)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        rows, length, hidden = x.shape
        qkv = self.qkv(x).view(rows, length, 3, self.heads, hidden // self.heads).permute(2, 0, 3, 1, 4)
        context = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        context = context.transpose(1, 2).reshape(rows, length, hidden)
        x = self.attention_norm(self.attention_out(context) + x)
        return self.output_norm(self.output(_act(self.act, self.intermediate(x))) + x)


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    """transformers' activations of these names: exact GELU, its tanh approximation, ReLU."""
    if name == "gelu":
        return F.gelu(x)
    if name == "relu":
        return F.relu(x)
    return F.gelu(x, approximate="tanh")  # gelu_new, gelu_pytorch_tanh


class BertEncoder(nn.Module):
    """Token embeddings of a BERT encoder: [rows, length] ids and mask in, [rows, length, hidden] out.

    Built on the meta device by `load_bert_encoder`, which then assigns the checkpoint's tensors.
    The embeddings are given their (empty) weights rather than initialised: a random normal fill on
    the meta device imports torch._dynamo (3.5 s, the most of a model load on a busy 2-core
    machine), and every value is overwritten anyway. The device is passed to each module rather
    than set by `with torch.device(...)` for the same reason."""

    def __init__(self, shape: BertShape, device: str = "meta") -> None:
        super().__init__()
        self.config = shape  # `PlainChain` reads config.hidden_size, as of a transformers model
        h = shape.hidden_size

        def table(rows: int) -> nn.Embedding:
            return nn.Embedding(rows, h, _weight=torch.empty(rows, h, device=device))

        self.word = table(shape.vocab_size)
        self.position = table(shape.max_position_embeddings)
        self.token_type = table(shape.type_vocab_size)
        self.embedding_norm = nn.LayerNorm(h, eps=shape.layer_norm_eps, device=device)
        self.layers = nn.ModuleList(_Layer(shape, device) for _ in range(shape.num_hidden_layers))

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
        return_dict: bool = True,  # transformers' calling convention: the output is always dict-like
    ) -> EncoderOutput:
        length = input_ids.shape[1]
        types = self.token_type.weight[0] if token_type_ids is None else self.token_type(token_type_ids)
        x = self.embedding_norm(self.word(input_ids) + types + self.position.weight[:length])
        # Additive, as transformers builds it: a masked key gets the dtype's lowest value, so a row
        # with no unmasked key (an empty token-id input) averages instead of dividing by zero.
        mask = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min
        for layer in self.layers:
            x = layer(x, mask)
        return EncoderOutput(x)


def load_bert_encoder(files: BertFiles) -> BertEncoder:
    """The encoder on the CPU with the checkpoint's tensors (at their stored dtype), built without
    initialising weights that are overwritten at once (seconds for BERT-large)."""
    encoder = BertEncoder(files.shape)
    state = {}
    with safe_open(str(files.weights), framework="pt", device="cpu") as stored:
        for name, sources in files.sources.items():
            tensors = [stored.get_tensor(source) for source in sources]
            state[name] = tensors[0] if len(tensors) == 1 else torch.cat(tensors)
    encoder.load_state_dict(state, strict=True, assign=True)
    return encoder.eval()
