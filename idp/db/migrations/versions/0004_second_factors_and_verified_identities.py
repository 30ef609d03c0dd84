"""second factors (TOTP, passkeys, recovery codes) and verified identities

Revision ID: 0004
Revises: 0003
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import idp.db.models

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "second_factors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("label", sa.String(length=64), nullable=False),
        sa.Column("binding", sa.String(length=16), nullable=False),
        sa.Column("amr", sa.String(length=8), nullable=False),
        sa.Column("created_at", idp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_used_at", idp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", idp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.Column("totp_secret", sa.LargeBinary(length=128), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("credential_id", sa.LargeBinary(length=1024), nullable=True),
        sa.Column("public_key", sa.LargeBinary(length=2048), nullable=True),
        sa.Column("sign_count", sa.BigInteger(), nullable=True),
        sa.Column("transports", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_second_factors_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_second_factors")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_second_factors_credential_id")),
    )
    with op.batch_alter_table("second_factors", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_second_factors_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "verified_identities",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("given_name", sa.String(length=255), nullable=False),
        sa.Column("family_name", sa.String(length=255), nullable=False),
        sa.Column("birth_family_name", sa.String(length=255), nullable=True),
        sa.Column("birthdate", sa.String(length=10), nullable=True),
        sa.Column("place_of_birth_locality", sa.String(length=255), nullable=True),
        sa.Column("place_of_birth_country", sa.String(length=3), nullable=True),
        sa.Column("street_address", sa.String(length=255), nullable=True),
        sa.Column("postal_code", sa.String(length=16), nullable=True),
        sa.Column("locality", sa.String(length=255), nullable=True),
        sa.Column("country", sa.String(length=3), nullable=True),
        sa.Column("nationalities", sa.JSON(), nullable=False),
        sa.Column("evidence_method", sa.String(length=8), nullable=False),
        sa.Column("verified_at", idp.db.models.UTCDateTime(timezone=True), nullable=False),
        sa.Column("verifier", sa.String(length=255), nullable=False),
        sa.Column("document_type", sa.String(length=32), nullable=True),
        sa.Column("document_issuer_country", sa.String(length=3), nullable=True),
        sa.Column("document_expiry", sa.String(length=10), nullable=True),
        sa.Column("trust_framework", sa.String(length=32), nullable=False),
        sa.Column("assurance_level", sa.String(length=32), nullable=False),
        sa.Column("txn", sa.String(length=64), nullable=False),
        sa.Column("revoked_at", idp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["accounts.id"],
            name=op.f("fk_verified_identities_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_verified_identities")),
        sa.UniqueConstraint("txn", name=op.f("uq_verified_identities_txn")),
    )
    with op.batch_alter_table("verified_identities", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_verified_identities_account_id"), ["account_id"], unique=False
        )

    op.create_table(
        "recovery_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("factor_id", sa.Integer(), nullable=False),
        sa.Column("code_digest", sa.LargeBinary(length=32), nullable=False),
        sa.Column("used_at", idp.db.models.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["factor_id"],
            ["second_factors.id"],
            name=op.f("fk_recovery_codes_factor_id_second_factors"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recovery_codes")),
        sa.UniqueConstraint("code_digest", name=op.f("uq_recovery_codes_code_digest")),
    )
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recovery_codes_factor_id"), ["factor_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("recovery_codes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recovery_codes_factor_id"))

    op.drop_table("recovery_codes")
    with op.batch_alter_table("verified_identities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_verified_identities_account_id"))

    op.drop_table("verified_identities")
    with op.batch_alter_table("second_factors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_second_factors_account_id"))

    op.drop_table("second_factors")
