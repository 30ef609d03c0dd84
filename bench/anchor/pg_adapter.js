// A PostgreSQL adapter for node-oidc-provider: its stateful models (sessions,
// interactions, grants, codes, refresh tokens, ...) in one table, durable as
// idp's are. node-oidc-provider's bundled in-memory adapter is, in its own
// words at start-up, development-only: a production deployment gives it a
// store like this one. Written for the benchmark from the adapter interface
// (upsert, find, findByUid, findByUserCode, consume, destroy, revokeByGrantId).
//
// One row per model instance: the payload as JSONB, the grant and uid it is
// looked up by, its expiry, and when it was consumed. Expired rows are never
// returned; nothing here deletes them (a real deployment would, on a timer).

import pg from 'pg';

const SCHEMA = 'anchor';

export async function pgAdapter(connectionString, poolSize = 10) {
  const pool = new pg.Pool({ connectionString, max: poolSize });
  await pool.query(`CREATE SCHEMA IF NOT EXISTS ${SCHEMA}`);
  await pool.query(`
    CREATE TABLE IF NOT EXISTS ${SCHEMA}.oidc_models (
      model text NOT NULL,
      id text NOT NULL,
      payload jsonb NOT NULL,
      grant_id text,
      uid text,
      user_code text,
      expires_at timestamptz,
      consumed_at timestamptz,
      PRIMARY KEY (model, id)
    )`);
  await pool.query(`CREATE INDEX IF NOT EXISTS oidc_models_grant ON ${SCHEMA}.oidc_models (grant_id)`);
  await pool.query(`CREATE INDEX IF NOT EXISTS oidc_models_uid ON ${SCHEMA}.oidc_models (model, uid)`);
  await pool.query(
    `CREATE INDEX IF NOT EXISTS oidc_models_user_code ON ${SCHEMA}.oidc_models (model, user_code)`,
  );

  const live = '(expires_at IS NULL OR expires_at > now())';
  const withConsumed = (row) => (row
    ? { ...row.payload, ...(row.consumed_at ? { consumed: Math.floor(row.consumed_at / 1000) } : {}) }
    : undefined);

  return class PostgresAdapter {
    constructor(model) {
      this.model = model;
    }

    async upsert(id, payload, expiresIn) {
      await pool.query(
        `INSERT INTO ${SCHEMA}.oidc_models (model, id, payload, grant_id, uid, user_code, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6,
                 CASE WHEN $7::int IS NULL THEN NULL ELSE now() + make_interval(secs => $7::int) END)
         ON CONFLICT (model, id) DO UPDATE SET payload = EXCLUDED.payload,
           grant_id = EXCLUDED.grant_id, uid = EXCLUDED.uid, user_code = EXCLUDED.user_code,
           expires_at = EXCLUDED.expires_at`,
        [this.model, id, payload, payload.grantId || null, payload.uid || null,
          payload.userCode || null, expiresIn || null],
      );
    }

    // Column names are this file's constants, never input.
    async findWhere(column, value) {
      const { rows } = await pool.query(
        `SELECT payload, consumed_at FROM ${SCHEMA}.oidc_models
         WHERE model = $1 AND ${column} = $2 AND ${live}`,
        [this.model, value],
      );
      return withConsumed(rows[0]);
    }

    async find(id) {
      return this.findWhere('id', id);
    }

    async findByUid(uid) {
      return this.findWhere('uid', uid);
    }

    async findByUserCode(userCode) {
      return this.findWhere('user_code', userCode);
    }

    async consume(id) {
      await pool.query(
        `UPDATE ${SCHEMA}.oidc_models SET consumed_at = now() WHERE model = $1 AND id = $2`,
        [this.model, id],
      );
    }

    async destroy(id) {
      await pool.query(`DELETE FROM ${SCHEMA}.oidc_models WHERE model = $1 AND id = $2`, [this.model, id]);
    }

    async revokeByGrantId(grantId) {
      await pool.query(`DELETE FROM ${SCHEMA}.oidc_models WHERE grant_id = $1`, [grantId]);
    }
  };
}
