use super::*;

#[test]
fn batch_coalesces_small_events_and_passes_large_ones() {
    let mut b = Batch::default();
    b.push(WriteOp::Append { bytes: Bytes::from_static(b"aaa"), end_pos: 7 });
    b.push(WriteOp::Append { bytes: Bytes::from_static(b"bb"), end_pos: 9 });
    let big = Bytes::from(vec![7u8; COALESCE_BELOW]);
    b.push(WriteOp::Append { bytes: big.clone(), end_pos: 9 + big.len() as u64 });
    b.push(WriteOp::Append { bytes: Bytes::from_static(b"c"), end_pos: 10 + big.len() as u64 });
    assert_eq!(b.bytes, 6 + big.len());
    let ops = b.take();
    assert_eq!(
        ops,
        vec![
            WriteOp::Append { bytes: Bytes::from_static(b"aaabb"), end_pos: 9 },
            WriteOp::Append { bytes: big.clone(), end_pos: 9 + big.len() as u64 },
            WriteOp::Append { bytes: Bytes::from_static(b"c"), end_pos: 10 + big.len() as u64 },
        ]
    );
    assert!(b.is_empty());
    assert_eq!(b.bytes, 0);
}

#[test]
fn replica_uuid_is_stable_and_well_formed() {
    let a = replica_uuid("k1");
    assert_eq!(a, replica_uuid("k1"));
    assert_ne!(a, replica_uuid("k2"));
    assert_eq!(a.len(), 36);
    assert!(crate::binlog::gtid::Uuid::parse(&a).is_ok());
}
