//! The renewal tables in the SQLite inventory: [`super::sql`]'s statements
//! on the inventory's connection, writes in `BEGIN IMMEDIATE` transactions
//! (SQLite's single writer makes them take turns across processes).

use rusqlite::types::{ToSqlOutput, Value};
use rusqlite::Connection;

use super::sql::{impl_get, Arg, Conn, Each, Tables, SCHEMA};
use crate::store::sqlite::Sqlite;
use crate::Error;

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match *self {
            Arg::Int(n) => ToSqlOutput::from(n),
            Arg::Text(s) => ToSqlOutput::from(s),
            Arg::OptText(Some(s)) => ToSqlOutput::from(s),
            Arg::OptText(None) => ToSqlOutput::Owned(Value::Null),
            Arg::Bool(b) => ToSqlOutput::from(b),
        })
    }
}

impl_get!(rusqlite::Row<'_>, get);

/// SQLite reads `$1` as a named parameter numbered by first use; `?1` is
/// the positional one the shared SQL means.
fn positional(sql: &str) -> String {
    sql.replace('$', "?")
}

impl Conn for &Connection {
    fn query(&mut self, sql: &str, args: &[Arg<'_>], each: Each<'_>) -> Result<(), Error> {
        let mut stmt = self.prepare_cached(&positional(sql))?;
        let mut rows = stmt.query(rusqlite::params_from_iter(args))?;
        while let Some(r) = rows.next()? {
            each(r)?;
        }
        Ok(())
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        let n = self
            .prepare_cached(&positional(sql))?
            .execute(rusqlite::params_from_iter(args))?;
        Ok(n as u64)
    }
}

impl Tables for Sqlite {
    fn create(&self) -> Result<(), Error> {
        self.conn().execute_batch(SCHEMA)?;
        Ok(())
    }

    fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error> {
        f(&mut self.conn())
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error> {
        let tx = self.immediate()?;
        let out = f(&mut tx.conn())?;
        tx.commit()?;
        Ok(out)
    }

    fn sync_every_commit(&self) -> Result<(), Error> {
        // In WAL mode FULL syncs the log at every commit; NORMAL only at
        // checkpoints, so a power cut can undo the last commits.
        self.conn().pragma_update(None, "synchronous", "FULL")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synchronous(db: &Sqlite) -> i64 {
        db.conn()
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn the_renewal_services_commits_are_synced_and_others_stay_normal() {
        let dir = tempfile::tempdir().unwrap();
        let db = Sqlite::open(&dir.path().join("inventory.db")).unwrap();
        assert_eq!(synchronous(&db), 1, "NORMAL for fleet issue and the rest");
        crate::renewal::RenewalStore::durable_commits(&db).unwrap();
        assert_eq!(synchronous(&db), 2, "FULL: every commit synced");
        // Per connection: another connection (another command) is not changed.
        let other = Sqlite::open(&dir.path().join("inventory.db")).unwrap();
        assert_eq!(synchronous(&other), 1);
    }
}
