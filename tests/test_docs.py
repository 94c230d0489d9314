"""docs/plugins.md documents every hook with its exact signature, every name of the plugin
API (recbench.plugin), every optional class attribute, every fixture and parameter of the
conformance kit, and the plugin switches; its Python examples compile."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import recbench.plugin
import recbench.testing
from recbench import hookspecs
from recbench.contracts import OPTIONAL_ATTRIBUTES, REQUIRED_ATTRIBUTES, REQUIRED_METHODS
from recbench.registry import HOOK_NAMES

DOCS = Path(__file__).resolve().parent.parent / "docs" / "plugins.md"
TEXT = DOCS.read_text(encoding="utf-8")
FLAT = " ".join(TEXT.split())  # whitespace collapsed: signatures may wrap


def hook_signature(name: str) -> str:
    """``def name(param: Annotation) -> None`` as written in recbench/hookspecs.py."""
    function = getattr(hookspecs, name)
    signature = inspect.signature(function)  # annotations are strings (postponed)
    parameters = ", ".join(f"{p.name}: {p.annotation}" for p in signature.parameters.values())
    return f"def {name}({parameters}) -> {signature.return_annotation}"


def test_every_hookspec_is_listed():
    declared = {
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, "recbench_spec")
    }
    assert declared == set(HOOK_NAMES)


@pytest.mark.parametrize("name", HOOK_NAMES)
def test_every_hook_is_documented_with_its_exact_signature(name):
    assert f"### `{name}`" in TEXT, f"docs/plugins.md has no section for the hook {name}"
    assert hook_signature(name) in TEXT, (
        f"docs/plugins.md does not show the signature of {name}: {hook_signature(name)}"
    )


def test_the_docs_describe_no_hook_that_does_not_exist():
    documented = set(re.findall(r"^### `(register_\w+)`", TEXT, flags=re.MULTILINE))
    assert documented == set(HOOK_NAMES)


@pytest.mark.parametrize("kind", sorted(REQUIRED_METHODS))
def test_every_contract_method_and_attribute_is_documented(kind):
    for method in REQUIRED_METHODS[kind]:
        assert f"def {method}(self" in TEXT, f"the {kind} method {method} is not documented"
    for attribute in REQUIRED_ATTRIBUTES[kind]:
        assert f"    {attribute} = " in TEXT, f"the {kind} attribute {attribute} is not documented"


@pytest.mark.parametrize("name", recbench.plugin.__all__)
def test_every_name_of_the_plugin_api_is_documented(name):
    assert f"`{name}`" in TEXT or f"`{name}(" in TEXT, (
        f"docs/plugins.md does not mention recbench.plugin.{name}"
    )


def test_the_plugin_api_exports_what_it_says_and_only_that():
    exported = {name for name in vars(recbench.plugin) if not name.startswith("_")}
    modules = {name for name in exported if inspect.ismodule(getattr(recbench.plugin, name))}
    assert set(recbench.plugin.__all__) == exported - modules - {"annotations"}
    for name in recbench.plugin.__all__:
        assert name in recbench.plugin.__doc__, f"the docstring of recbench.plugin omits {name}"


@pytest.mark.parametrize(
    ("kind", "attribute"),
    [(kind, name) for kind, names in OPTIONAL_ATTRIBUTES.items() for name in names],
)
def test_every_optional_attribute_is_documented_with_an_example(kind, attribute):
    assert f"    {attribute} = " in TEXT, f"the optional {kind} attribute {attribute} is not shown"


def test_the_kit_fixtures_and_assert_conforms_are_documented():
    fixtures = [name for name in vars(recbench.testing) if name.startswith("recbench_")]
    assert len(fixtures) >= 5
    for fixture in fixtures:
        assert f"| `{fixture}` |" in TEXT, f"the fixture {fixture} is not documented"
    parameters = []
    for parameter in inspect.signature(recbench.testing.assert_conforms).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY and not parameters[1:]:
            parameters.append("*")
        default = parameter.default
        text = "" if default is inspect.Parameter.empty else "=" + repr(default).replace("'", '"')
        parameters.append(parameter.name + text)
    assert f"assert_conforms({', '.join(parameters)})" in FLAT


def test_plugin_api_and_plugin_switches_are_documented():
    assert f"{hookspecs.PLUGIN_API_ATTRIBUTE} = {hookspecs.PLUGIN_API_VERSION}" in TEXT
    assert f"(currently {hookspecs.PLUGIN_API_VERSION})" in TEXT
    for variable in ("RECBENCH_DISABLE_PLUGINS", "RECBENCH_LOAD_PLUGINS"):
        assert re.search(rf"^{variable}=\S+ recbench ", TEXT, flags=re.MULTILINE), variable
    assert (
        "Installing a plugin runs its code" in TEXT or "installing a plugin runs its code" in TEXT
    )


def test_python_examples_compile():
    blocks = re.findall(r"```python\n(.*?)```", TEXT, flags=re.DOTALL)
    assert len(blocks) >= 8
    for block in blocks:
        if re.fullmatch(r"(def )?\w+\([^)]*\)( -> \w+)?\n", block):
            continue  # a signature, checked above
        try:
            compile(block, str(DOCS), "exec")
        except SyntaxError as exc:
            pytest.fail(f"a Python example in docs/plugins.md does not compile ({exc}):\n{block}")
