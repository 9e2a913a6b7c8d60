"""Outside systems, each behind a small protocol and chosen by name from config.

`connectors.crm` holds desks/CRMs (`CRMConnector`), `connectors.social` holds
influence sources (`InfluenceSource`). Nothing here is constructed at import
time; the worker asks the registries for the configured names.
"""
