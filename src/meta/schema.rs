// The diesel schema, one for both backends. Must match migrations/sqlite and migrations/mysql:
// nothing compares them directly, but the store's contract runs every query against freshly
// migrated databases of both (`meta::store::tests::contract_on_sqlite`, `meta_mysql::*` in the
// integration suite), so a column missing from either fails there.

diesel::table! {
    tasks (id) {
        id -> BigInt,
        name -> Text,
        cluster_key -> Text,
        source_host -> Text,
        source_port -> Integer,
        source_user -> Text,
        source_password -> Text,
        source_flavor -> Text,
        source_server_id -> Nullable<BigInt>,
        source_tls_mode -> Text,
        source_tls_ca_file -> Nullable<Text>,
        start_mode -> Text,
        start_file -> Nullable<Text>,
        start_pos -> Nullable<BigInt>,
        start_gtid_set -> Nullable<Text>,
        retention_days -> Integer,
        desired_state -> Text,
        state -> Text,
        last_error_code -> Nullable<Text>,
        last_error_message -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        bucket_retention_days -> Integer,
        last_error_since -> Nullable<Timestamp>,
        last_error_attempts -> Nullable<Integer>,
        source_server_public_key -> Nullable<Text>,
        source_semi_sync -> Bool,
    }
}

diesel::table! {
    checkpoints (task_id) {
        task_id -> BigInt,
        source_identity -> Nullable<Text>,
        file_name -> Nullable<Text>,
        pos -> Nullable<BigInt>,
        gtid_set -> Nullable<Text>,
        updated_at -> Timestamp,
        node_id -> Nullable<Text>,
        epoch -> Nullable<BigInt>,
    }
}

diesel::table! {
    task_events (id) {
        id -> BigInt,
        task_id -> BigInt,
        event_type -> Text,
        message -> Text,
        created_at -> Timestamp,
    }
}

diesel::table! {
    binlog_files (id) {
        id -> BigInt,
        task_id -> BigInt,
        source_identity -> Text,
        file_name -> Text,
        state -> Text,
        start_pos -> BigInt,
        header_len -> BigInt,
        end_pos -> Nullable<BigInt>,
        size -> BigInt,
        sha256 -> Nullable<Text>,
        created_at -> Timestamp,
        sealed_at -> Nullable<Timestamp>,
        upload_state -> Text,
        upload_attempts -> Integer,
        upload_error -> Nullable<Text>,
        next_upload_at -> Nullable<Timestamp>,
        object_key -> Nullable<Text>,
        uploaded_at -> Nullable<Timestamp>,
        upload_verified -> Bool,
        local_deleted_at -> Nullable<Timestamp>,
        remote_deleted_at -> Nullable<Timestamp>,
        first_event_at -> Nullable<Timestamp>,
        last_event_at -> Nullable<Timestamp>,
        first_gtid -> Nullable<Text>,
        last_gtid -> Nullable<Text>,
        gtid_start -> Nullable<Text>,
        gtid_end -> Nullable<Text>,
        gtid_added -> Nullable<Text>,
        summary_pos -> BigInt,
    }
}

diesel::table! {
    cluster_nodes (node_id) {
        node_id -> Text,
        version -> Text,
        max_tasks -> Integer,
        started_at -> Timestamp,
        heartbeat_at -> Timestamp,
        left_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    task_leases (task_id) {
        task_id -> BigInt,
        owner -> Text,
        epoch -> BigInt,
        expires_at -> Timestamp,
        acquired_at -> Timestamp,
        renewed_at -> Timestamp,
        fence_checks -> BigInt,
    }
}

diesel::table! {
    relay_users (name) {
        name -> Text,
        task_id -> BigInt,
        native_hash -> Text,
        sha2_hash -> Text,
        created_at -> Timestamp,
    }
}

diesel::allow_tables_to_appear_in_same_query!(
    tasks,
    checkpoints,
    task_events,
    binlog_files,
    cluster_nodes,
    task_leases,
    relay_users
);
