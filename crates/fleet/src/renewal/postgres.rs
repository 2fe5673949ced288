//! The renewal tables in a PostgreSQL inventory: [`super::sql`]'s
//! statements, with every write in a transaction holding the inventory's
//! write lock (the transaction-scoped advisory lock `fleet issue`, `revoke`
//! and `crl` take). Several `fleet serve` processes on one database thus
//! take turns for each re-check-then-write step exactly as SQLite's single
//! writer makes them: a device never gets two pending renewals, and a
//! pending renewal is confirmed once. The tables themselves are schema
//! migration 2 ([`crate::store::postgres`]).

use postgres::types::ToSql;
use postgres::GenericClient;

use super::sql::{impl_get, Arg, Conn, Each, Tables};
use crate::store::postgres::Postgres;
use crate::Error;

impl_get!(postgres::Row, try_get);

fn params<'a>(args: &'a [Arg<'a>]) -> Vec<&'a (dyn ToSql + Sync)> {
    args.iter()
        .map(|a| -> &(dyn ToSql + Sync) {
            match a {
                Arg::Int(n) => n,
                Arg::Text(s) => s,
                Arg::OptText(s) => s,
                Arg::Bool(b) => b,
            }
        })
        .collect()
}

/// A client or a transaction, as a [`Conn`].
struct Pg<'a, C: GenericClient>(&'a mut C);

impl<C: GenericClient> Conn for Pg<'_, C> {
    fn query(&mut self, sql: &str, args: &[Arg<'_>], each: Each<'_>) -> Result<(), Error> {
        for r in self.0.query(sql, &params(args))? {
            each(&r)?;
        }
        Ok(())
    }

    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, Error> {
        Ok(self.0.execute(sql, &params(args))?)
    }
}

impl Tables for Postgres {
    fn create(&self) -> Result<(), Error> {
        // Made by the schema migrations when the database was opened.
        Ok(())
    }

    fn read<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error> {
        f(&mut Pg(&mut *self.client()))
    }

    fn write<T>(&self, f: &mut dyn FnMut(&mut dyn Conn) -> Result<T, Error>) -> Result<T, Error> {
        Postgres::write(self, |tx| f(&mut Pg(tx)))
    }
}
