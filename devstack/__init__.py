"""The local stack for development and tests: Kafka, Postgres, OpenBao, Consul, nginx and Prometheus.

Each module starts one real component on 127.0.0.1 with its data under the git-ignored ``.stack/``;
``stack`` composes them. None of this is product code: it stays out of the wheel and the image
(``pyproject.toml`` lists only the product packages), and ``scripts/bootstrap.sh`` puts the checkout
on the development virtualenv's path so that ``treasury-orch infra`` and ``run`` find it.
"""
