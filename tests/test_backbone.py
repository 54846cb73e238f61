"""The model contract: every classifier is a backbone (timm's interface), built by one resolver."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.backbone import Backbone, FeatureExtractor, load_backbone_state
from cnnlab.errors import ConfigError
from cnnlab.registry import list_models, model_arguments, model_info

CLASSIFIERS = [n for n in list_models(task="classify") if model_info(n).family != "RNN"]


def forms(name: str):
    """(small_input, default side) of each form of a model: the paper's, and the 28x28 one where there is one."""
    info = model_info(name)
    out = [(False, info.input_size[1])] if info.input_size[1] > 28 or not info.has_small_form else []
    if info.has_small_form:
        out.append((True, 28))
    return out


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_feature_info_matches_the_maps_at_three_input_sizes(name):
    """Each stage's map has the channels feature_info states, and its side grows by exactly
    delta / reduction when the input grows by delta (a multiple of every stride): the nominal stride."""
    info = model_info(name)
    for small, side in forms(name):
        kwargs = {"small_input": small} if info.has_small_form else {}
        with torch.device("meta"):
            extractor = cnnlab.create_model(name, features_only=True, num_classes=10, in_channels=1, **kwargs).eval()
        assert isinstance(extractor, FeatureExtractor) and len(extractor.feature_info) >= 3
        delta = 32 if small else 64
        sizes = (side, side + delta, side + 2 * delta)
        maps = [extractor(torch.zeros(1, 1, s, s, device="meta")) for s in sizes]
        reductions = extractor.reductions
        assert reductions == sorted(reductions) and len(set(reductions)) == len(reductions)
        for i, stage in enumerate(extractor.feature_info):
            channels = {m[i].shape[1] for m in maps}
            sides = [m[i].shape[-1] for m in maps]
            assert channels == {stage.channels}, (name, small, stage)
            assert sides[1] - sides[0] == sides[2] - sides[1] == delta // stage.reduction, (name, small, stage, sides)


@pytest.mark.parametrize("name", ["lenet5_modern", "resnet20", "resnet18", "googlenet", "densenet_bc_small", "nin",
                                  "shufflenet_v2_x1_0", "inception_v3", "alexnet"])
def test_forward_is_head_of_features_and_hooks_on_trunk_modules_fire(name):
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=7, input_size=(1, 28, 28)).eval()
    assert isinstance(model, Backbone)
    x = torch.randn(2, 1, 28, 28)
    seen = []
    path, module = model.trunk()[-1]
    handle = module.register_forward_hook(lambda m, i, o: seen.append(o.shape))
    with torch.no_grad():
        logits = model(x)
        features = model.forward_features(x)
        pooled = model.forward_head(features, pre_logits=True)
        assert torch.allclose(model.forward_head(features), logits, atol=1e-6)
    handle.remove()
    assert len(seen) == 2 and seen[0] == features.shape  # the trunk module is the real one, run by forward
    assert logits.shape == (2, 7) and pooled.ndim == 2 and pooled.shape[0] == 2
    assert model.get_submodule(path) is module
    last = model.feature_info[-1]
    assert features.shape[1] == last.channels


def test_feature_extractor_keeps_only_the_trunk_it_needs_and_loads_a_classifiers_weights():
    torch.manual_seed(0)
    classifier = cnnlab.create_model("resnet18", num_classes=10, in_channels=1, small_input=True).eval()
    extractor = cnnlab.create_model("resnet18", features_only=True, out_indices=(1, 2), in_channels=1,
                                    small_input=True).eval()
    names = set(extractor.model.state_dict())
    assert not any(k.startswith(("fc.", "layer3.", "layer4.")) for k in names)  # head and deeper stages dropped
    used = load_backbone_state(extractor, classifier.state_dict())
    assert set(used) == names
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        maps = extractor(x)
        h = classifier.maxpool(classifier.relu(classifier.bn1(classifier.conv1(x))))
        expected = classifier.layer2(classifier.layer1(h))
    assert [m.shape[1] for m in maps] == [64, 128] == extractor.channels and extractor.reductions == [2, 4]
    torch.testing.assert_close(maps[1], expected)
    wrong = cnnlab.create_model("resnet34", num_classes=10, in_channels=3).state_dict()
    with pytest.raises(ConfigError, match="do not fit"):
        load_backbone_state(extractor, wrong)


def test_contract_errors_are_one_clear_line():
    with pytest.raises(ConfigError, match="no pretrained weights"):
        cnnlab.create_model("resnet18", pretrained=True)
    with pytest.raises(ConfigError, match="no convolutional stages"):
        cnnlab.create_model("lstm_classifier", features_only=True)
    with pytest.raises(ConfigError, match="stage 9 does not exist"):
        cnnlab.create_model("lenet5", features_only=True, out_indices=(9,))
    with pytest.raises(ConfigError, match="out_indices goes with features_only"):
        cnnlab.create_model("lenet5", out_indices=(1,))
    with pytest.raises(ConfigError, match="has no option 'widht'"):
        model_arguments("googlenet", options={"widht": 0.5})
    with pytest.raises(ConfigError, match="takes no argument"):
        cnnlab.create_model("resnet18", image_size=28)


def test_one_resolver_picks_channels_image_size_and_the_small_form():
    assert model_arguments("vgg16", input_size=(1, 28, 28), num_classes=10) == {
        "num_classes": 10, "in_channels": 1, "small_input": True}
    assert model_arguments("vgg16", input_size=(3, 224, 224), num_classes=5)["small_input"] is False
    assert model_arguments("vgg16", input_size=(3, 224, 224), small_input="yes")["small_input"] is True
    lenet = model_arguments("lenet5", input_size=(1, 32, 32), num_classes=10)  # LeNet sizes its F5 from the image
    assert (lenet["image_size"], lenet["in_channels"], lenet["num_classes"]) == (32, 1, 10)
    assert cnnlab.create_model("lenet5", **lenet)(torch.zeros(1, 1, 32, 32)).shape == (1, 10)
    with pytest.raises(ConfigError, match="square"):
        model_arguments("lenet5", input_size=(1, 32, 28))
    model = cnnlab.create_model("vgg11", input_size=(1, 28, 28), num_classes=10)
    assert model(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_list_models_matches_substrings_and_tasks():
    assert "resnet18" in list_models("res") and "densenet121" not in list_models("res")
    assert list_models("vgg1?") == ["vgg11", "vgg13", "vgg16", "vgg19"]
    classifiers, segmenters = set(list_models(task="classify")), set(list_models(task="segment"))
    assert {"resnet18", "vgg16"} <= classifiers and {"unet", "fcn8s"} <= segmenters
    assert not classifiers & segmenters and classifiers | segmenters <= set(list_models())
