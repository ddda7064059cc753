"""The suites' fixtures live in ``fixtures/``; the plugin (keyparity.plugin) is registered
through the ``pytest11`` entry point. No logic here."""

pytest_plugins = ("fixtures.keys", "fixtures.census", "fixtures.tls", "fixtures.cluster",
                  "fixtures.ownership", "fixtures.baseline", "fixtures.cloudhsm")
