"""The shape of each resource, defined once (pydantic v2 models).

The stack config is validated with these models, the components pass their dumps to the
providers, and each provider's replace / update / state tables are read from them
(`types.change`). docs/config.schema.json is generated from the same models
(`python -m components.config_schema`). Cross-resource rules (pool size against OSD hosts,
NICs on bridges the stack makes) are a semantic pass after them, in components/config*.py.
"""
