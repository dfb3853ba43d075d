//! Welcome's `cluster_urls` (issue 13): the other nodes a client may fail
//! over to. An appended field, so a Welcome without it (an older server)
//! decodes to an empty list, and a Welcome with it keeps every older field
//! where an older client reads it; lists past the limits are refused by the
//! encoder and the decoder alike.

use bytes::{Bytes, BytesMut};
use flatbuffers::FlatBufferBuilder;
use flit_wire::schema;
use flit_wire::{
    decode, Encoder, Frame, FrameHeader, Limits, Op, Welcome, WireError, FRAME_HEADER_BYTES, WELCOME_URLS_MAX,
    WELCOME_URL_BYTES_MAX,
};

fn welcome(cluster_urls: Vec<String>) -> Welcome {
    Welcome {
        version: 2,
        server_name: "node-1".to_owned(),
        shard: 0,
        shards: 2,
        payload_bytes_max: 1 << 20,
        meta_bytes_max: 65535,
        pending_bytes_max: 64 << 20,
        subscriptions_max: 1024,
        cluster_urls,
    }
}

/// A Welcome frame whose meta is built directly with flatbuffers, bypassing
/// the `Encoder`'s checks; `None`: the field absent, as an older server sends it.
fn raw_welcome(cluster_urls: Option<&[&str]>) -> Bytes {
    let mut builder = FlatBufferBuilder::new();
    let server_name = Some(builder.create_string("old-node"));
    let cluster_urls = cluster_urls.map(|urls| {
        let urls: Vec<_> = urls.iter().map(|url| builder.create_string(url)).collect();
        builder.create_vector(&urls)
    });
    let root = schema::Welcome::create(
        &mut builder,
        &schema::WelcomeArgs { version: 1, server_name, shard: 3, shards: 4, cluster_urls, ..Default::default() },
    );
    builder.finish_minimal(root);
    let meta = builder.finished_data();
    let meta_len = u16::try_from(meta.len()).expect("meta fits a u16");
    let mut out = BytesMut::new();
    out.extend_from_slice(&FrameHeader { body_len: u32::from(meta_len), op: Op::Welcome, meta_len, tag: 0 }.to_bytes());
    out.extend_from_slice(meta);
    out.freeze()
}

fn decoded(frame: Bytes) -> Result<Welcome, WireError> {
    match decode(frame, &Limits::default())? {
        Frame::Welcome(welcome) => Ok(welcome),
        other => panic!("not a Welcome: {other:?}"),
    }
}

#[test]
fn a_welcome_with_cluster_urls_round_trips() {
    let sent = welcome(vec!["10.0.0.2:4224".to_owned(), "node-3.example:4224".to_owned()]);
    let mut out = BytesMut::new();
    Encoder::default().welcome(&mut out, &sent).expect("encodes");
    assert_eq!(decoded(out.freeze()).expect("decodes"), sent);
}

#[test]
fn a_welcome_without_the_field_decodes_to_an_empty_list() {
    let welcome = decoded(raw_welcome(None)).expect("an older server's Welcome decodes");
    assert!(welcome.cluster_urls.is_empty());
    assert_eq!((welcome.version, welcome.shard, welcome.shards), (1, 3, 4));
    assert_eq!(welcome.server_name, "old-node");
}

#[test]
fn an_empty_list_is_not_written_at_all() {
    // A node without a cluster sends exactly the bytes it sent before the field existed.
    let mut with_empty = BytesMut::new();
    Encoder::default().welcome(&mut with_empty, &welcome(Vec::new())).expect("encodes");
    let meta = &with_empty[FRAME_HEADER_BYTES..];
    let table = flatbuffers::root::<schema::Welcome>(meta).expect("verifies");
    assert!(table.cluster_urls().is_none(), "absent, not an empty vector");
}

#[test]
fn the_older_fields_read_the_same_with_the_new_one_present() {
    // What an older client reads: the fields it knows, at their usual slots.
    let frame = raw_welcome(Some(&["10.0.0.2:4224"]));
    let table = flatbuffers::root::<schema::Welcome>(&frame[FRAME_HEADER_BYTES..]).expect("verifies");
    assert_eq!((table.version(), table.shard(), table.shards()), (1, 3, 4));
    assert_eq!(table.server_name(), Some("old-node"));
}

#[test]
fn too_many_urls_are_refused_by_both_ends() {
    let many: Vec<String> = (0..=WELCOME_URLS_MAX).map(|index| format!("10.0.0.{index}:4224")).collect();
    let error = Encoder::default().welcome(&mut BytesMut::new(), &welcome(many.clone())).expect_err("too many");
    assert!(matches!(error, WireError::InvalidField { table: "Welcome", field: "cluster_urls", .. }), "{error:?}");
    let refs: Vec<&str> = many.iter().map(String::as_str).collect();
    let error = decoded(raw_welcome(Some(&refs))).expect_err("too many");
    assert!(matches!(error, WireError::InvalidField { table: "Welcome", field: "cluster_urls", .. }), "{error:?}");
    // Exactly the limit is fine.
    assert_eq!(decoded(raw_welcome(Some(&refs[..WELCOME_URLS_MAX]))).expect("at the limit").cluster_urls.len(), 64);
}

#[test]
fn empty_long_or_spaced_urls_are_refused() {
    let long = "a".repeat(WELCOME_URL_BYTES_MAX + 1);
    for bad in ["", "10.0.0.2 :4224", "10.0.0.2:4224\n", long.as_str()] {
        let error = decoded(raw_welcome(Some(&["10.0.0.1:4224", bad]))).expect_err(bad);
        assert!(matches!(error, WireError::InvalidField { field: "cluster_urls", .. }), "{bad:?}: {error:?}");
        let error = Encoder::default()
            .welcome(&mut BytesMut::new(), &welcome(vec![bad.to_owned()]))
            .expect_err("the encoder refuses it too");
        assert!(matches!(error, WireError::InvalidField { field: "cluster_urls", .. }), "{bad:?}: {error:?}");
    }
    let longest = "a".repeat(WELCOME_URL_BYTES_MAX);
    assert_eq!(decoded(raw_welcome(Some(&[longest.as_str()]))).expect("at the limit").cluster_urls, vec![longest]);
}
