//! The uploader of an ARCHIVE_ONLY task. Such a task never runs (it has no `TaskActor` and stays
//! STOPPED), yet its imported files are uploaded, verified and kept under retention like fetched
//! ones: the supervisor runs an `UploadActor` for it beside the task actors, from the process
//! start (or the task's creation) until the task is deleted or no longer ARCHIVE_ONLY.
//! [`runs_uploader`] decides; `Supervisor::sync_archive` carries the decision out.
//!
//! An import over the API wakes it at once ([`FilesImported`]); files a `binlog-server import`
//! process catalogued meanwhile are found by its periodic look at the catalog.

use actix::prelude::*;
use slog::{info, o, warn};

use super::Supervisor;
use crate::actors::upload::{StopUploads, UploadActor, UploadNow, UploadParams};
use crate::domain::{StartSpec, Task, TaskId};

/// Whether a task gets an uploader of its own, outside any `TaskActor`: an ARCHIVE_ONLY task,
/// while upload is enabled, on a single node. Without upload nothing would be uploaded and its
/// local copies are the only ones (retention is not applied to them, as to any stopped task's);
/// in cluster mode a task's files are on the node that ran it, and an archive-only task runs
/// nowhere.
pub fn runs_uploader(start: &StartSpec, upload_enabled: bool, cluster: bool) -> bool {
    start.is_archive_only() && upload_enabled && !cluster
}

/// Files were imported into a task (over the API): upload them now if it is an archive.
#[derive(Message)]
#[rtype(result = "()")]
pub struct FilesImported(pub TaskId);

impl Supervisor {
    /// Starts, wakes or stops task `id`'s archive uploader as [`runs_uploader`] says for `task`
    /// (`None`: the task is gone).
    pub(super) fn sync_archive(&mut self, id: TaskId, task: Option<&Task>) {
        let wanted = task.filter(|t| {
            !self.shutting_down && runs_uploader(&t.spec.start, self.objects.is_some(), self.cluster_mode())
        });
        match (wanted, self.archives.get(&id)) {
            (Some(_), Some(addr)) if addr.connected() => addr.do_send(UploadNow),
            (Some(task), _) => {
                info!(self.log, "uploading the archive-only task's files"; "task_id" => id.0);
                let params = UploadParams::for_task(
                    &self.settings,
                    task,
                    self.store.clone(),
                    self.objects.clone(),
                    self.root_log.new(o!("task_id" => id.0, "actor" => "upload")),
                    None,
                );
                let addr = UploadActor::start_in_arbiter(&self.uploads, move |_| UploadActor::new(params));
                self.archives.insert(id, addr);
            }
            (None, _) => {
                if let Some(addr) = self.archives.remove(&id) {
                    addr.do_send(StopUploads);
                }
            }
        }
    }

    /// Stops every archive uploader (process shutdown; an upload in flight is redone later).
    pub(super) fn stop_archives(&mut self) {
        for (_, addr) in self.archives.drain() {
            addr.do_send(StopUploads);
        }
    }
}

impl Handler<FilesImported> for Supervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, msg: FilesImported, _: &mut Context<Self>) -> Self::Result {
        let id = msg.0;
        let store = self.store.clone();
        Box::pin(async move { store.call(move |s| s.get_task(id)).await }.into_actor(self).map(move |res, act, _| {
            match res {
                Ok(task) => act.sync_archive(id, Some(&task)),
                Err(e) => warn!(act.log, "cannot read the task after an import"; "task_id" => id.0, "error" => %e),
            }
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_archive_only_tasks_with_upload_on_a_single_node_get_an_uploader() {
        let (archive, latest) = (StartSpec::ArchiveOnly, StartSpec::Latest);
        // (start, upload enabled, cluster mode, wanted)
        let table = [
            (&archive, true, false, true),
            (&archive, false, false, false),
            (&archive, true, true, false),
            (&latest, true, false, false),
            (&latest, false, false, false),
        ];
        for (start, upload, cluster, want) in table {
            assert_eq!(runs_uploader(start, upload, cluster), want, "{start:?} upload={upload} cluster={cluster}");
        }
    }
}
