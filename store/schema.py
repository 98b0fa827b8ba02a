"""The run-log schema (the contract users write SQL against) and its forward migrations.

Each migration is applied once, in order, inside a transaction; `schema_version` records
which have run. Never edit a released migration: add a new one.
"""

from __future__ import annotations

MIGRATIONS: list[list[str]] = [
    [
        """CREATE TABLE runs (
            run_id VARCHAR PRIMARY KEY,
            sweep VARCHAR,
            arch VARCHAR,
            parametrization VARCHAR,
            d_model INTEGER,
            n_layers INTEGER,
            n_heads INTEGER,
            seq_len INTEGER,
            vocab_size INTEGER,
            params BIGINT,
            params_nonembed BIGINT,
            tokens BIGINT,
            flops DOUBLE,
            lr DOUBLE,
            batch_size INTEGER,
            warmup INTEGER,
            schedule VARCHAR,
            precision VARCHAR,
            seed INTEGER,
            corpus VARCHAR,
            corpus_sha256 VARCHAR,
            status VARCHAR NOT NULL,
            final_val_loss DOUBLE,
            final_train_loss DOUBLE,
            wall_s DOUBLE,
            tokens_per_s DOUBLE,
            device VARCHAR,
            error VARCHAR,
            created_at TIMESTAMP DEFAULT current_timestamp,
            finished_at TIMESTAMP,
            config JSON,
            source VARCHAR NOT NULL DEFAULT 'local'
        )""",
        """CREATE TABLE curves (
            run_id VARCHAR NOT NULL,
            step INTEGER NOT NULL,
            tokens BIGINT NOT NULL,
            train_loss DOUBLE,
            val_loss DOUBLE,
            lr DOUBLE,
            PRIMARY KEY (run_id, step)
        )""",
        """CREATE TABLE fits (
            fit_id VARCHAR PRIMARY KEY,
            law VARCHAR NOT NULL,
            arch VARCHAR,
            selection VARCHAR,
            params JSON,
            uncertainty JSON,
            n_points INTEGER,
            objective DOUBLE,
            created_at TIMESTAMP DEFAULT current_timestamp
        )""",
        """CREATE TABLE predictions (
            prediction_id VARCHAR PRIMARY KEY,
            fit_id VARCHAR,
            question JSON,
            value DOUBLE,
            lo DOUBLE,
            hi DOUBLE,
            level DOUBLE,
            created_at TIMESTAMP DEFAULT current_timestamp
        )""",
        """CREATE TABLE sweep_runs (
            sweep VARCHAR NOT NULL,
            run_id VARCHAR NOT NULL,
            PRIMARY KEY (sweep, run_id)
        )""",
        """CREATE VIEW best_lr AS
            SELECT arch, parametrization, params, tokens, batch_size,
                   arg_min(lr, final_val_loss) AS lr, min(final_val_loss) AS final_val_loss,
                   count(*) AS n_runs
            FROM runs WHERE status = 'done'
            GROUP BY ALL""",
    ],
    # 2: the unique tokens a run could see (its corpus's training split; for imported runs
    # U_D as the data-constrained law calls it). NULL for runs recorded before.
    ["ALTER TABLE runs ADD COLUMN unique_tokens BIGINT"],
    # v3: the column holds the whole fit record (parameters, uncertainty, state), not only
    # the uncertainty, so it is named for what it holds
    ["ALTER TABLE fits RENAME COLUMN uncertainty TO record"],
    # v4: branches (a cooldown started from a checkpoint of another run's stable phase) name
    # their parent run and the step they left it at; NULL for runs that are no branch.
    # Imported curves may not know the tokens of each step: curves.tokens may be NULL.
    [
        "ALTER TABLE runs ADD COLUMN parent_run_id VARCHAR",
        "ALTER TABLE runs ADD COLUMN branch_step BIGINT",
        "ALTER TABLE curves ALTER COLUMN tokens DROP NOT NULL",
    ],
    # v5: who trains a `running` run ('pid N on host'), so that a run whose process was
    # killed can be told from one still training (store.runs.owner_alive)
    ["ALTER TABLE runs ADD COLUMN owner VARCHAR"],
    # v6: what a fit was computed on (fits.machine: numpy, its SIMD level, the cores, the
    # CPU): an ill-conditioned fit refitted on another machine can differ. NULL for fits
    # stored before.
    ["ALTER TABLE fits ADD COLUMN computed_on VARCHAR"],
]

SCHEMA_VERSION = len(MIGRATIONS)
STATUSES = ("pending", "running", "done", "diverged", "failed")  # a run's status
RUN_COLUMNS = (
    "run_id", "sweep", "arch", "parametrization", "d_model", "n_layers", "n_heads", "seq_len",
    "vocab_size", "params", "params_nonembed", "tokens", "flops", "lr", "batch_size", "warmup",
    "schedule", "precision", "seed", "corpus", "corpus_sha256", "status", "final_val_loss",
    "final_train_loss", "wall_s", "tokens_per_s", "device", "error", "created_at",
    "finished_at", "config", "source", "unique_tokens", "parent_run_id", "branch_step",
    "owner",
)  # fmt: skip
