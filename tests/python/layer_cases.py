"""The case lists of make_layer_cases.py: the visible peft-layers cases (fixtures README section 8)
and the hidden-style variants (other sizes, seeds and combinations)."""

VIS_CONV = {"c_in": 3, "c1": 4, "c2": 6, "height": 6, "width": 8, "n_out": 5}
VIS_C1D = {"c_in": 3, "c1": 5, "c2": 6, "length": 9, "n_out": 4}
VIS_EMB = {"vocab": 20, "d_model": 8}
VIS_SHAPES = {"convnet": 4, "conv1dnet": 4, "embednet": [4, 5]}

# hidden-like: non-square images, other channels, another vocabulary, 5 input rows
HID_CONV = {"c_in": 2, "c1": 5, "c2": 3, "height": 7, "width": 5, "n_out": 6}
HID_C1D = {"c_in": 4, "c1": 3, "c2": 7, "length": 12, "n_out": 3}
HID_EMB = {"vocab": 27, "d_model": 6}
HID_SHAPES = {"convnet": 5, "conv1dnet": 5, "embednet": [5, 3]}


def case(name, model, adapters, active=("default",), mixed=None, combos=(), dims=None, shape=None, notes=()):
    return dict(name=name, model=model, adapters=adapters, active=list(active), mixed=mixed, combos=list(combos),
                dims=dims, shape=shape, notes=list(notes))


def visible_cases():
    d = {"convnet": VIS_CONV, "conv1dnet": VIS_C1D, "embednet": VIS_EMB}
    cs = [
        case("convnet_default", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 8})]),
        case("convnet_init_false", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 2, "lora_alpha": 6, "init_lora_weights": False})]),
        case("convnet_conv_linear", "convnet", [("default", {"target_modules": ["conv1", "head"], "r": 4, "lora_alpha": 8})]),
        case("convnet_dora", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 8, "use_dora": True})]),
        case("convnet_rslora", "convnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 8, "lora_alpha": 16, "use_rslora": True})]),
        case("conv1dnet_default", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 8})]),
        case("embednet_default", "embednet", [("default", {"target_modules": ["emb"], "r": 4, "lora_alpha": 8})]),
        case("embednet_init_false", "embednet", [("default", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 6, "init_lora_weights": False})]),
        case("embednet_dora", "embednet", [("default", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 8, "use_dora": True})]),
        case("embednet_mts_emb", "embednet", [("default", {"target_modules": ["proj", "head"], "r": 4, "lora_alpha": 8, "modules_to_save": ["emb"]})],
             mixed=["default", "__base__", "__base__", "default"]),
        case("embednet_mts_head", "embednet", [("default", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 8, "modules_to_save": ["head"]})],
             mixed=["__base__", "default", "default", "__base__"]),
        case("embednet_trainable_tokens", "embednet", [("default", {"target_modules": ["proj", "head"], "r": 4, "lora_alpha": 8, "trainable_token_indices": {"emb": [3, 8, 13]}})],
             mixed=["default", "__base__", "default", "__base__"]),
        case("embednet_two_adapters_mixed", "embednet",
             [("default", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 8}),
              ("other", {"target_modules": ["proj", "head"], "r": 2, "lora_alpha": 6, "init_lora_weights": "gaussian"})],
             mixed=["other", "__base__", "default", "other"], combos=["default", "other", "default+other"]),
        case("convnet_two_adapters_mixed", "convnet",
             [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 8}),
              ("other", {"target_modules": ["conv1", "head"], "r": 3, "lora_alpha": 4, "init_lora_weights": False})],
             active=["other"], mixed=["default", "other", "__base__", "default"], combos=["default", "other"]),
    ]
    for c in cs:
        c["dims"], c["shape"] = d[c["model"]], VIS_SHAPES[c["model"]]
    return cs


def hidden_cases():
    d = {"convnet": HID_CONV, "conv1dnet": HID_C1D, "embednet": HID_EMB}
    cs = [
        # the visible recipes with other sizes / ranks / alphas (float alphas included)
        case("h_convnet_default", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 3, "lora_alpha": 5})]),
        case("h_convnet_init_false", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 5, "lora_alpha": 2.5, "init_lora_weights": False})]),
        case("h_convnet_conv_linear", "convnet", [("default", {"target_modules": ["conv0", "head"], "r": 6, "lora_alpha": 3})]),
        case("h_convnet_dora", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 2, "lora_alpha": 7.5, "use_dora": True})]),
        case("h_convnet_rslora", "convnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 5, "lora_alpha": 10, "use_rslora": True})]),
        case("h_conv1dnet_default", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 6, "lora_alpha": 4})]),
        case("h_embednet_default", "embednet", [("default", {"target_modules": ["emb"], "r": 5, "lora_alpha": 3.5})]),
        case("h_embednet_init_false", "embednet", [("default", {"target_modules": ["emb", "head"], "r": 3, "lora_alpha": 9, "init_lora_weights": False})]),
        case("h_embednet_dora", "embednet", [("default", {"target_modules": ["emb", "proj", "head"], "r": 3, "lora_alpha": 4.5, "use_dora": True})]),
        case("h_embednet_mts_emb", "embednet", [("default", {"target_modules": ["proj"], "r": 2, "lora_alpha": 3, "modules_to_save": ["emb"]})],
             mixed=["__base__", "default", "default", "__base__", "default"]),
        case("h_embednet_mts_head", "embednet", [("default", {"target_modules": ["emb"], "r": 6, "lora_alpha": 12, "modules_to_save": ["head"]})],
             mixed=["default", "default", "__base__", "__base__", "default"]),
        case("h_embednet_trainable_tokens", "embednet", [("default", {"target_modules": ["proj"], "r": 3, "lora_alpha": 6, "trainable_token_indices": {"emb": [25, 0, 11, 7]}})],
             mixed=["__base__", "default", "__base__", "default", "default"]),
        case("h_embednet_two_adapters_mixed", "embednet",
             [("default", {"target_modules": ["emb", "head"], "r": 3, "lora_alpha": 5}),
              ("other", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 2, "init_lora_weights": "gaussian"})],
             active=["other"], mixed=["other", "default", "__base__", "other", "default"], combos=["default", "other", "other+default"]),
        case("h_convnet_two_adapters_mixed", "convnet",
             [("default", {"target_modules": ["conv1", "head"], "r": 2, "lora_alpha": 3}),
              ("other", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 6, "init_lora_weights": False})],
             mixed=["other", "__base__", "default", "default", "other"], combos=["default", "other", "default+other"]),
        # combinations that the visible set does not contain
        case("h_convnet_dora_rslora", "convnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 4, "lora_alpha": 6, "use_dora": True, "use_rslora": True})]),
        case("h_convnet_lora_bias", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 3, "lora_alpha": 6, "lora_bias": True})]),
        case("h_conv1dnet_lora_bias", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 2, "lora_alpha": 5, "lora_bias": True})]),
        case("h_convnet_gaussian", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 4, "init_lora_weights": "gaussian"})]),
        case("h_conv1dnet_gaussian_false_mix", "conv1dnet",
             [("default", {"target_modules": ["conv1"], "r": 3, "lora_alpha": 9, "init_lora_weights": "gaussian"}),
              ("other", {"target_modules": ["conv0", "head"], "r": 2, "lora_alpha": 1.5, "init_lora_weights": False})],
             mixed=["default", "other", "other", "__base__", "default"], combos=["default", "other", "default+other"]),
        case("h_conv1dnet_dora", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 3, "lora_alpha": 5, "use_dora": True})]),
        case("h_conv1dnet_dora_rslora", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 4, "lora_alpha": 3.0, "use_dora": True, "use_rslora": True})]),
        case("h_convnet_patterns", "convnet",
             [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 4, "lora_alpha": 8,
                           "rank_pattern": {"conv1": 2, "head": 6}, "alpha_pattern": {"conv0": 3, "head": 1.5}})]),
        case("h_embednet_patterns_rslora", "embednet",
             [("default", {"target_modules": ["emb", "proj", "head"], "r": 4, "lora_alpha": 8, "use_rslora": True,
                           "rank_pattern": {"emb": 2, "proj": 5}, "alpha_pattern": {"emb": 6.5}})]),
        case("h_embednet_tokens_list_order", "embednet",
             [("default", {"target_modules": ["head"], "r": 2, "lora_alpha": 4, "trainable_token_indices": {"emb": [26, 3]}})],
             mixed=["default", "__base__", "default", "default", "__base__"]),
        case("h_embednet_tokens_two_adapters", "embednet",
             [("default", {"target_modules": ["proj"], "r": 2, "lora_alpha": 4, "trainable_token_indices": {"emb": [1, 5, 9]}}),
              ("other", {"target_modules": ["head"], "r": 3, "lora_alpha": 3, "trainable_token_indices": {"emb": [9, 2]}})],
             mixed=["other", "default", "__base__", "other", "default"], combos=["default", "other"]),
        case("h_embednet_tokens_mts_head", "embednet",
             [("default", {"target_modules": ["proj"], "r": 4, "lora_alpha": 4, "trainable_token_indices": {"emb": [2, 20]}, "modules_to_save": ["head"]})],
             mixed=["default", "__base__", "__base__", "default", "default"]),
        case("h_embednet_mts_dora", "embednet",
             [("default", {"target_modules": ["proj", "head"], "r": 3, "lora_alpha": 6, "use_dora": True, "modules_to_save": ["emb"]})]),
        case("h_convnet_mts_head_dora", "convnet",
             [("default", {"target_modules": ["conv0", "conv1"], "r": 2, "lora_alpha": 4, "use_dora": True, "modules_to_save": ["head"]})]),
        case("h_convnet_mts_conv", "convnet",
             [("default", {"target_modules": ["conv1", "head"], "r": 3, "lora_alpha": 4, "modules_to_save": ["conv0"]})],
             mixed=["default", "__base__", "default", "__base__", "__base__"]),
        case("h_convnet_three_adapters_dora", "convnet",
             [("default", {"target_modules": ["conv0", "conv1"], "r": 2, "lora_alpha": 4}),
              ("other", {"target_modules": ["conv1", "head"], "r": 3, "lora_alpha": 2.5, "init_lora_weights": "gaussian"}),
              ("third", {"target_modules": ["conv0", "head"], "r": 2, "lora_alpha": 3, "use_dora": True})],
             active=["third"], mixed=["default", "other", "__base__", "other", "default"],
             combos=["default", "other", "third", "default+other", "other+third", "default+other+third"]),
        case("h_embednet_three_adapters", "embednet",
             [("default", {"target_modules": ["emb"], "r": 2, "lora_alpha": 4}),
              ("other", {"target_modules": ["proj", "head"], "r": 3, "lora_alpha": 4.5, "use_dora": True}),
              ("third", {"target_modules": ["emb", "head"], "r": 4, "lora_alpha": 2, "init_lora_weights": False})],
             active=["default", "third"], mixed=["third", "default", "__base__", "third", "default"],
             combos=["default", "other", "third", "other+third"]),
        case("h_convnet_dropout", "convnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 3, "lora_alpha": 3, "lora_dropout": 0.2})]),
        case("h_convnet_regex", "convnet", [("default", {"target_modules": "conv\\d", "r": 2, "lora_alpha": 5})]),
        case("h_embednet_all_linear", "embednet", [("default", {"target_modules": "all-linear", "r": 3, "lora_alpha": 7})]),
        case("h_convnet_bias_all", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 2, "lora_alpha": 4, "bias": "all"})]),
        case("h_embednet_lora_bias_linear", "embednet", [("default", {"target_modules": ["emb", "proj", "head"], "r": 2, "lora_alpha": 2, "lora_bias": False}),
                                                           ("other", {"target_modules": ["proj", "head"], "r": 2, "lora_alpha": 3, "lora_bias": True})],
             active=["other"], mixed=["default", "other", "__base__", "other", "__base__"], combos=["default", "default+other"]),
        case("h_convnet_two_active_dora", "convnet",
             [("default", {"target_modules": ["conv0", "conv1"], "r": 3, "lora_alpha": 7.3}),
              ("other", {"target_modules": ["conv1", "head"], "r": 2, "lora_alpha": 5, "use_dora": True})],
             active=["default", "other"], mixed=["default", "__base__", "default", "default", "__base__"],
             combos=["default", "other", "other+default"]),
        case("h_embednet_two_mts_head", "embednet",
             [("default", {"target_modules": ["emb"], "r": 2, "lora_alpha": 4, "modules_to_save": ["head"]}),
              ("other", {"target_modules": ["proj"], "r": 3, "lora_alpha": 1.25, "modules_to_save": ["head"]})],
             active=["other"], mixed=["other", "default", "__base__", "default", "other"], combos=["default", "other"]),
        case("h_conv1dnet_mts_conv_mixed", "conv1dnet",
             [("default", {"target_modules": ["conv0", "head"], "r": 2, "lora_alpha": 2, "modules_to_save": ["conv1"]})],
             mixed=["__base__", "default", "default", "__base__", "default"]),
        case("h_embednet_dora_rslora", "embednet", [("default", {"target_modules": ["emb", "head"], "r": 5, "lora_alpha": 2.75, "use_dora": True, "use_rslora": True})]),
        case("h_convnet_bias_lora_only", "convnet", [("default", {"target_modules": ["conv0", "head"], "r": 2, "lora_alpha": 4, "bias": "lora_only"})]),
        case("h_embednet_init_false_patterns", "embednet",
             [("default", {"target_modules": ["emb", "proj"], "r": 2, "lora_alpha": 3, "init_lora_weights": False,
                           "rank_pattern": {"^emb": 7}, "alpha_pattern": {"p.*j": 0.5}})]),
        case("h_convnet_tiny", "convnet", [("default", {"target_modules": ["conv0", "conv1", "head"], "r": 7, "lora_alpha": 3, "use_dora": True})],
             dims={"c_in": 1, "c1": 2, "c2": 2, "height": 1, "width": 2, "n_out": 1}),
        case("h_conv1dnet_tiny", "conv1dnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 6, "lora_alpha": 6, "lora_bias": True})],
             dims={"c_in": 1, "c1": 2, "c2": 3, "length": 2, "n_out": 2}),
        case("h_embednet_big_rank", "embednet", [("default", {"target_modules": ["emb", "proj", "head"], "r": 16, "lora_alpha": 4})],
             dims={"vocab": 11, "d_model": 3}, shape=[2, 7]),
        # visible dims, other seeds (seed variant 1)
        case("v1_convnet_default", "convnet", [("default", {"target_modules": ["conv0", "conv1"], "r": 4, "lora_alpha": 8})], dims=VIS_CONV, shape=4),
        case("v1_embednet_dora", "embednet", [("default", {"target_modules": ["emb", "proj"], "r": 4, "lora_alpha": 8, "use_dora": True})], dims=VIS_EMB, shape=[4, 5]),
    ]
    for c in cs:
        c["dims"] = c["dims"] or d[c["model"]]
        c["shape"] = c["shape"] or HID_SHAPES[c["model"]]
    return cs


# ------------------------------------------------------------------------------------------------
# Generation
