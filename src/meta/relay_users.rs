//! Relay users: who may pull which task's binlog through the relay listener. Only the protocol's
//! password hashes are stored (`relay_auth::UserHashes`); a name belongs to one task.

use diesel::prelude::*;

use crate::domain::TaskId;
use crate::meta::StoreError;
use crate::meta::models::now_naive;
use crate::meta::schema::relay_users;
use crate::meta::store::Store;
use crate::relay_auth::UserHashes;

/// A relay user as stored.
#[derive(Debug, Clone)]
pub struct RelayUser {
    pub name: String,
    pub task_id: TaskId,
    pub hashes: UserHashes,
}

impl Store {
    /// Replaces the relay users of task `id` (an empty list revokes them all). A name another
    /// task uses is `Duplicate("relay user name")`.
    pub fn set_relay_users(&self, id: TaskId, users: &[(String, UserHashes)]) -> Result<(), StoreError> {
        let now = now_naive(self.clock().now());
        self.write_tx(|c| {
            c.transaction(|c| {
                // Write first (`Store::lock_task_row`): on SQLite, a transaction that reads first
                // is refused the write lock at once when another connection committed meanwhile.
                if !self.lock_task_row(c, id)? {
                    return Err(StoreError::NotFound);
                }
                for (name, _) in users {
                    let owner: Option<i64> =
                        relay_users::table.find(name).select(relay_users::task_id).first(c).optional()?;
                    if owner.is_some_and(|o| o != id.0) {
                        return Err(StoreError::Duplicate("relay user name"));
                    }
                }
                diesel::delete(relay_users::table.filter(relay_users::task_id.eq(id.0))).execute(c)?;
                for (name, h) in users {
                    diesel::insert_into(relay_users::table)
                        .values((
                            relay_users::name.eq(name),
                            relay_users::task_id.eq(id.0),
                            relay_users::native_hash.eq(h.native_hex()),
                            relay_users::sha2_hash.eq(h.sha2_hex()),
                            relay_users::created_at.eq(now),
                        ))
                        .execute(c)?;
                }
                Ok(())
            })
        })
    }

    /// The names of task `id`'s relay users, sorted.
    pub fn relay_user_names(&self, id: TaskId) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        Ok(relay_users::table
            .filter(relay_users::task_id.eq(id.0))
            .order(relay_users::name.asc())
            .select(relay_users::name)
            .load(&mut *conn)?)
    }

    /// The tasks that have relay users.
    pub fn relay_task_ids(&self) -> Result<Vec<TaskId>, StoreError> {
        let mut conn = self.conn()?;
        let ids: Vec<i64> = relay_users::table
            .select(relay_users::task_id)
            .distinct()
            .order(relay_users::task_id.asc())
            .load(&mut *conn)?;
        Ok(ids.into_iter().map(TaskId).collect())
    }

    /// The relay user called `name`, if any.
    pub fn find_relay_user(&self, name: &str) -> Result<Option<RelayUser>, StoreError> {
        let mut conn = self.conn()?;
        let row: Option<(String, i64, String, String)> = relay_users::table
            .find(name)
            .select((relay_users::name, relay_users::task_id, relay_users::native_hash, relay_users::sha2_hash))
            .first(&mut *conn)
            .optional()?;
        Ok(row.and_then(|(name, task, native, sha2)| {
            Some(RelayUser { name, task_id: TaskId(task), hashes: UserHashes::from_hex(&native, &sha2)? })
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relay_users_belong_to_one_task_and_keep_only_hashes() {
        let dir = tempfile::tempdir().unwrap();
        let dsn = crate::meta::MetaDsn::Sqlite(dir.path().join("meta.db"));
        let store = Store::open(&dsn, 2, crate::clock::system()).unwrap();
        let a = store.create_task(&crate::meta::store::tests::spec("relay-a")).unwrap().id;
        let b = store.create_task(&crate::meta::store::tests::spec("relay-b")).unwrap().id;
        let h = UserHashes::from_password("pw");
        store.set_relay_users(a, &[("r1".into(), h.clone()), ("r2".into(), h.clone())]).unwrap();
        assert_eq!(store.relay_user_names(a).unwrap(), vec!["r1", "r2"]);
        assert!(matches!(store.set_relay_users(b, &[("r1".into(), h.clone())]), Err(StoreError::Duplicate(_))));
        let u = store.find_relay_user("r2").unwrap().unwrap();
        assert_eq!((u.task_id, u.hashes), (a, h.clone()));
        store.set_relay_users(a, &[]).unwrap();
        assert!(store.find_relay_user("r1").unwrap().is_none());
        assert!(matches!(store.set_relay_users(TaskId(999), &[]), Err(StoreError::NotFound)));
    }
}
