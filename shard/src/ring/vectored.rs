//! What a send in flight owns: its bytes and, for a `SENDMSG`, the iovecs and
//! message header the kernel reads them through.
//!
//! Invariants: a [`VectoredSend`] is boxed, so the header's address (in the
//! SQE) and the iovec array's address (in the header) stay put while the
//! ring's map of sends in flight grows or moves its entries; the iovecs point
//! into the `Bytes` of the same [`SendInFlight`], which are neither dropped
//! nor changed before the entry is removed after the send's completion
//! (`Ring::finish_send`), or leaked with it when the ring is dropped first.

use bytes::Bytes;

use crate::outgoing::Outgoing;

/// The most segments one send carries (the kernel allows `UIO_MAXIOV`, 1024).
/// The shard splices at most `SPLICED_SEGMENTS_MAX` pieces ahead of a write
/// buffer (shard/routing.rs), which keeps every send below this.
pub const SEND_SEGMENTS_MAX: usize = 256;

/// A send the kernel may still read.
pub(super) struct SendInFlight {
    pub data: Outgoing,
    /// Present for a `SENDMSG`: never read again, only kept alive (the
    /// kernel reads it) until the entry goes.
    #[allow(dead_code)]
    pub vectored: Option<Box<VectoredSend>>,
}

/// The iovecs and header of one `SENDMSG`.
pub(super) struct VectoredSend {
    iovecs: Vec<libc::iovec>,
    header: libc::msghdr,
}

impl VectoredSend {
    /// Describes `segments` (which the caller keeps alive with this value).
    pub fn new(segments: &[Bytes]) -> Box<VectoredSend> {
        let iovecs: Vec<libc::iovec> = segments
            .iter()
            .map(|segment| libc::iovec { iov_base: segment.as_ptr() as *mut libc::c_void, iov_len: segment.len() })
            .collect();
        let header = libc::msghdr {
            msg_name: std::ptr::null_mut(),
            msg_namelen: 0,
            msg_iov: std::ptr::null_mut(),
            msg_iovlen: 0,
            msg_control: std::ptr::null_mut(),
            msg_controllen: 0,
            msg_flags: 0,
        };
        let mut vectored = Box::new(VectoredSend { iovecs, header });
        vectored.header.msg_iov = vectored.iovecs.as_mut_ptr();
        vectored.header.msg_iovlen = vectored.iovecs.len() as _;
        vectored
    }

    /// The header for the SQE: valid as long as this box lives.
    pub fn header_pointer(&self) -> *const libc::msghdr {
        &self.header
    }
}
