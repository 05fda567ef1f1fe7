//! `UploadActor`: uploads sealed files to S3-compatible storage. (Filled in by the upload work.)

use actix::prelude::*;

pub struct UploadActor;

impl Actor for UploadActor {
    type Context = Context<Self>;
}
