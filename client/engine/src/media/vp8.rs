//! VP8 encoding and decoding with the system's libvpx: a realtime, error-resilient,
//! constant-bitrate encoder on one thread, with bitrate and frame rate changeable while running
//! (congestion control drives them) and keyframes on request; a decoder that reports a corrupt
//! frame as an error, so the caller asks for a keyframe. Frames go in and out as
//! [`VideoFrame`]s, bitstreams as plain VP8 frames (what RFC 7741 packets carry). This file is the
//! only caller of libvpx; it does no RTP and no IO.

use std::ffi::{c_int, c_long, c_uint, c_ulong, CStr};
use std::mem::MaybeUninit;
use std::ptr;

use vpx_sys::{
    vp8_dec_control_id, vp8e_enc_control_id, vpx_codec_ctx_t, vpx_codec_cx_pkt_kind, vpx_codec_dec_cfg_t,
    vpx_codec_dec_init_ver, vpx_codec_decode, vpx_codec_destroy, vpx_codec_enc_cfg_t, vpx_codec_enc_config_default,
    vpx_codec_enc_config_set, vpx_codec_enc_init_ver, vpx_codec_encode, vpx_codec_err_t, vpx_codec_err_to_string,
    vpx_codec_error, vpx_codec_error_detail, vpx_codec_get_cx_data, vpx_codec_get_frame, vpx_codec_iter_t,
    vpx_codec_peek_stream_info, vpx_codec_stream_info_t, vpx_codec_vp8_cx, vpx_codec_vp8_dx, vpx_color_range,
    vpx_color_space, vpx_enc_pass, vpx_image_t, vpx_img_fmt, vpx_kf_mode, vpx_rc_mode, VPX_DECODER_ABI_VERSION,
    VPX_DL_REALTIME, VPX_EFLAG_FORCE_KF, VPX_ENCODER_ABI_VERSION, VPX_FRAME_IS_KEY,
};

use super::frame::{copy_plane, FrameError, VideoFrame};
use super::video_codec::{EncodedFrame, EncoderConfig};

/// Largest side of a VP8 picture (the bitstream has 14 bits for it).
const MAX_SIDE: usize = 16_383;
/// Largest picture the decoder accepts from a stranger: 4096 pixels a side and 4096x2304 in all.
/// A keyframe's header alone could otherwise make it allocate buffers for 16383x16383.
const MAX_DECODE_SIDE: u32 = 4096;
const MAX_DECODE_PIXELS: u32 = 4096 * 2304;
/// Encoder speed: `-N` is speed N at every frame (a positive value would instead spend a share
/// of each frame's time, adapting the speed to the machine, so the encoder would take more CPU
/// the more there is). Speed 12 is the fastest that keeps the normal loop filter (14 and up
/// switch to the simple one) and half-pixel motion search (15 and up drop it). At 640x480 and
/// 1 Mbps on one thread it takes about as long as OpenH264 (`timing_at_640x480`); it runs about
/// 10 % fewer instructions than speed 10 and 8 % more than speed 16.
const CPU_USED: c_int = -12;
/// Rate control buffer in milliseconds of the target bitrate: initial, optimal and full size.
/// Half of what realtime WebRTC senders commonly use (500, 600, 1000): after the target falls,
/// the encoder spends down a buffer it still counts as full before it follows, and on thin links
/// that overshoot queued in the router (250 kbit/s, three runs each: g2g p95 134-169 ms against
/// 187-281 ms with the larger buffer).
const BUFFER_INITIAL_MS: c_uint = 300;
const BUFFER_OPTIMAL_MS: c_uint = 400;
/// The longest a keyframe may take to send at the target bitrate, ms.
const KEYFRAME_MAX_MS: u32 = 100;
const BUFFER_MS: c_uint = 500;
/// Quantizer bounds (0 to 63): the lowest spends no bits on invisible detail, the highest keeps
/// low bitrates from turning into mush (frames are dropped instead).
const MIN_QUANTIZER: c_uint = 2;
const MAX_QUANTIZER: c_uint = 56;
/// Rate control may overshoot by this share of the target and undershoot by this share, in
/// percent: a frame may come out small on an easy picture, but a large one delays the next ones.
const UNDERSHOOT_PCT: c_uint = 100;
const OVERSHOOT_PCT: c_uint = 15;
/// Buffer fullness, in percent, under which rate control drops a frame (when it may).
const DROP_FRAME_THRESHOLD: c_uint = 30;
/// Blocks that changed less than this (sum of absolute differences) are coded as unchanged; 1
/// skips only truly static blocks, as camera video wants.
const STATIC_THRESHOLD: c_uint = 1;
/// `pts` and `duration` are in microseconds.
const TIMEBASE_DEN: c_int = 1_000_000;

/// Why encoding or decoding failed.
#[derive(Debug, thiserror::Error)]
pub enum Vp8Error {
    #[error("VP8 needs a picture of 1x1 to 16383x16383, got {width}x{height}")]
    UnsupportedSize { width: usize, height: usize },
    #[error("bad video frame for VP8: {0}")]
    Frame(#[from] FrameError),
    #[error("invalid VP8 setting: {0}")]
    Config(String),
    #[error("libvpx failed to start: {0}")]
    Init(String),
    #[error("VP8 encoding failed: {0}")]
    Encode(String),
    /// A keyframe announced a picture larger than this decoder takes.
    #[error("VP8 stream of {width}x{height} is larger than 4096x2304")]
    StreamTooLarge { width: u32, height: u32 },
    /// The decoder rejected the frame or decoded it with errors: corrupt, or its reference is
    /// missing or corrupt. Ask the sender for a keyframe.
    #[error("corrupt or undecodable VP8 frame: {0}")]
    Corrupt(String),
}

impl Vp8Error {
    /// Whether a keyframe from the sender would mend what went wrong.
    pub fn needs_keyframe(&self) -> bool {
        matches!(self, Self::Corrupt(_))
    }
}

/// A VP8 encoder for realtime calls.
pub struct Encoder {
    config: EncoderConfig,
    /// Created on the first frame (and again when the picture size changes).
    inner: Option<RawEncoder>,
    keyframe_requested: bool,
    /// Capture time and `pts` of the last frame encoded.
    last: Option<(u64, i64)>,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Encoder {
    /// Checks the settings; libvpx's encoder itself starts with the first frame, whose size it
    /// takes.
    pub fn new(config: EncoderConfig) -> Result<Self, Vp8Error> {
        check_bitrate(config.bitrate_bps)?;
        check_frame_rate(config.frame_rate)?;
        Ok(Self { config, inner: None, keyframe_requested: false, last: None })
    }

    pub fn config(&self) -> EncoderConfig {
        self.config
    }

    /// Changes the target bitrate from the next frame on, without a keyframe.
    pub fn set_bitrate(&mut self, bitrate_bps: u32) -> Result<(), Vp8Error> {
        check_bitrate(bitrate_bps)?;
        self.config.bitrate_bps = bitrate_bps;
        if let Some(raw) = &mut self.inner {
            raw.cfg.rc_target_bitrate = kbps(bitrate_bps);
            raw.apply_config()?;
        }
        Ok(())
    }

    /// Changes the expected frame rate (1 to 120) from the next frame on. libvpx follows the
    /// frames' capture times; this sets the duration given to each frame and the keyframe size
    /// limit, which is counted in frames.
    pub fn set_frame_rate(&mut self, frame_rate: f32) -> Result<(), Vp8Error> {
        check_frame_rate(frame_rate)?;
        self.config.frame_rate = frame_rate;
        if let Some(raw) = &mut self.inner {
            raw.control_uint(vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT, max_intra_bitrate_pct(frame_rate))?;
        }
        Ok(())
    }

    /// Makes the next encoded frame a keyframe.
    pub fn force_keyframe(&mut self) {
        self.keyframe_requested = true;
    }

    /// Encodes one frame. `None` when rate control dropped it to hold the bitrate.
    pub fn encode(&mut self, frame: &VideoFrame) -> Result<Option<EncodedFrame>, Vp8Error> {
        let (width, height) = (frame.width, frame.height);
        if !(1..=MAX_SIDE).contains(&width) || !(1..=MAX_SIDE).contains(&height) {
            return Err(Vp8Error::UnsupportedSize { width, height });
        }
        frame.check_planes()?;
        let strides = (c_int::try_from(frame.y_stride), c_int::try_from(frame.uv_stride));
        let (Ok(y_stride), Ok(uv_stride)) = strides else {
            return Err(Vp8Error::Config(format!("strides {} and {} are too large", frame.y_stride, frame.uv_stride)));
        };
        if self.inner.as_ref().is_none_or(|raw| (raw.width, raw.height) != (width, height)) {
            // A new size needs a new encoder; its first frame is a keyframe anyway. The old one
            // goes first, so the two never hold their buffers at once.
            self.inner = None;
            self.inner = Some(RawEncoder::new(&self.config, width, height)?);
            self.keyframe_requested = false;
        }
        let Some(raw) = &mut self.inner else {
            return Err(Vp8Error::Init("no encoder after creating one".into()));
        };
        let duration = (1_000_000.0 / self.config.frame_rate).round() as i64;
        let pts = next_pts(&mut self.last, frame.capture_us, duration);
        let flags = if std::mem::take(&mut self.keyframe_requested) { VPX_EFLAG_FORCE_KF as c_long } else { 0 };
        let Some((data, keyframe)) = raw.encode(frame, (y_stride, uv_stride), pts, duration, flags)? else {
            return Ok(None);
        };
        Ok(Some(EncodedFrame { data, keyframe, number: frame.number, capture_us: frame.capture_us }))
    }
}

/// The `pts` of the next frame in microseconds: it advances by the capture-time step when frames
/// carry capture times (at least 1 µs, so it always increases, and at most a second, so a pause
/// does not look like a frame rate of nearly zero to rate control), by `duration` otherwise.
fn next_pts(last: &mut Option<(u64, i64)>, capture_us: u64, duration: i64) -> i64 {
    let pts = match *last {
        None => 0,
        Some((last_capture, last_pts)) if capture_us != 0 && last_capture != 0 => {
            let step = capture_us.saturating_sub(last_capture).clamp(1, 1_000_000);
            last_pts + step as i64
        }
        Some((_, last_pts)) => last_pts + duration,
    };
    *last = Some((capture_us, pts));
    pts
}

fn kbps(bitrate_bps: u32) -> c_uint {
    bitrate_bps.div_ceil(1000)
}

/// The largest keyframe rate control may make, in percent of an average frame's bits: 100 ms of
/// the target bitrate (300 % at 30 fps), and no less than two frames. A keyframe is sent at the
/// link's rate whatever its size, so each millisecond of it is a millisecond of delay for the
/// frames behind it on a thin link; a keyframe a little blurry for a few frames is the better
/// trade in a call.
fn max_intra_bitrate_pct(frame_rate: f32) -> c_uint {
    let pct = (f64::from(KEYFRAME_MAX_MS) * f64::from(frame_rate) / 10.0).round() as c_uint;
    pct.max(200)
}

fn check_bitrate(bitrate_bps: u32) -> Result<(), Vp8Error> {
    if !(10_000..=20_000_000).contains(&bitrate_bps) {
        return Err(Vp8Error::Config(format!("bitrate {bitrate_bps} bps is outside 10 kbps..20 Mbps")));
    }
    Ok(())
}

fn check_frame_rate(frame_rate: f32) -> Result<(), Vp8Error> {
    if !(1.0..=120.0).contains(&frame_rate) {
        return Err(Vp8Error::Config(format!("frame rate {frame_rate} is outside 1..120")));
    }
    Ok(())
}

/// libvpx's text for a status code.
fn status_text(status: vpx_codec_err_t) -> String {
    // SAFETY: `vpx_codec_err_to_string` returns a pointer to a static, NUL-terminated string for
    // every status, known or not.
    let text = unsafe { vpx_codec_err_to_string(status) };
    if text.is_null() {
        return format!("{status:?}");
    }
    // SAFETY: checked non-null above; the string is static and NUL-terminated.
    unsafe { CStr::from_ptr(text) }.to_string_lossy().into_owned()
}

/// The last error of a codec context, with its detail when libvpx gives one.
fn context_error(ctx: &mut vpx_codec_ctx_t) -> String {
    // SAFETY: `ctx` is an initialised context (every caller holds one); both functions return
    // either null or a NUL-terminated string that lives until the next call on the context,
    // and it is copied before that.
    unsafe {
        let error = vpx_codec_error(ctx);
        let detail = vpx_codec_error_detail(ctx);
        let mut text = if error.is_null() {
            "unknown error".to_owned()
        } else {
            CStr::from_ptr(error).to_string_lossy().into_owned()
        };
        if !detail.is_null() {
            text.push_str(": ");
            text.push_str(&CStr::from_ptr(detail).to_string_lossy());
        }
        text
    }
}

/// One initialised libvpx VP8 encoder context and the configuration it runs with.
struct RawEncoder {
    /// Boxed so that its address never changes while libvpx holds it.
    ctx: Box<vpx_codec_ctx_t>,
    cfg: Box<vpx_codec_enc_cfg_t>,
    width: usize,
    height: usize,
}

// SAFETY: a libvpx context has no tie to the thread that made it; `RawEncoder` owns its context
// alone and every use goes through `&mut self`, so moving it to another thread is sound.
unsafe impl Send for RawEncoder {}

impl RawEncoder {
    fn new(config: &EncoderConfig, width: usize, height: usize) -> Result<Self, Vp8Error> {
        let mut cfg = MaybeUninit::<vpx_codec_enc_cfg_t>::uninit();
        // SAFETY: `vpx_codec_vp8_cx` returns libvpx's static VP8 encoder interface, and
        // `vpx_codec_enc_config_default` writes a whole configuration through the pointer when it
        // returns OK; it is not read before that.
        let status = unsafe { vpx_codec_enc_config_default(vpx_codec_vp8_cx(), cfg.as_mut_ptr(), 0) };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Vp8Error::Init(format!("no default configuration: {}", status_text(status))));
        }
        // SAFETY: written in full by the call above, which succeeded.
        let mut cfg = Box::new(unsafe { cfg.assume_init() });
        // The size was checked against `MAX_SIDE`, so it fits.
        cfg.g_w = width as c_uint;
        cfg.g_h = height as c_uint;
        cfg.g_threads = 1;
        cfg.g_timebase.num = 1;
        cfg.g_timebase.den = TIMEBASE_DEN;
        // No entropy probabilities carry over from frame to frame, so a lost frame does not also
        // garble how later ones are read (they still refer to its picture, so the receiver waits
        // for a keyframe all the same).
        cfg.g_error_resilient = 1;
        cfg.g_pass = vpx_enc_pass::VPX_RC_ONE_PASS;
        cfg.g_lag_in_frames = 0;
        cfg.rc_end_usage = vpx_rc_mode::VPX_CBR;
        cfg.rc_target_bitrate = kbps(config.bitrate_bps);
        cfg.rc_resize_allowed = 0;
        cfg.rc_dropframe_thresh = if config.allow_frame_skip { DROP_FRAME_THRESHOLD } else { 0 };
        cfg.rc_min_quantizer = MIN_QUANTIZER;
        cfg.rc_max_quantizer = MAX_QUANTIZER;
        cfg.rc_undershoot_pct = UNDERSHOOT_PCT;
        cfg.rc_overshoot_pct = OVERSHOOT_PCT;
        cfg.rc_buf_initial_sz = BUFFER_INITIAL_MS;
        cfg.rc_buf_optimal_sz = BUFFER_OPTIMAL_MS;
        cfg.rc_buf_sz = BUFFER_MS;
        cfg.kf_min_dist = 0;
        if config.keyframe_interval > 0 {
            cfg.kf_mode = vpx_kf_mode::VPX_KF_AUTO;
            cfg.kf_max_dist = config.keyframe_interval;
        } else {
            cfg.kf_mode = vpx_kf_mode::VPX_KF_DISABLED;
            cfg.kf_max_dist = 0;
        }

        // SAFETY: all-zero bytes are a valid `vpx_codec_ctx_t` (null pointers, status OK, no
        // flags): the state libvpx expects of a context before initialisation.
        let mut ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `ctx` and `cfg` are valid and boxed, so they stay in place for the context's
        // life; the ABI version is the one the bindings were generated for (libvpx checks it).
        let status = unsafe {
            vpx_codec_enc_init_ver(&mut *ctx, vpx_codec_vp8_cx(), &*cfg, 0, VPX_ENCODER_ABI_VERSION as c_int)
        };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            // A failed initialisation leaves nothing to free.
            return Err(Vp8Error::Init(status_text(status)));
        }
        let mut raw = Self { ctx, cfg, width, height };
        raw.control_int(vp8e_enc_control_id::VP8E_SET_CPUUSED, CPU_USED)?;
        raw.control_uint(vp8e_enc_control_id::VP8E_SET_NOISE_SENSITIVITY, 0)?;
        raw.control_uint(vp8e_enc_control_id::VP8E_SET_STATIC_THRESHOLD, STATIC_THRESHOLD)?;
        // One token partition: the frame is one unit on the wire anyway.
        raw.control_int(vp8e_enc_control_id::VP8E_SET_TOKEN_PARTITIONS, 0)?;
        raw.control_uint(
            vp8e_enc_control_id::VP8E_SET_MAX_INTRA_BITRATE_PCT,
            max_intra_bitrate_pct(config.frame_rate),
        )?;
        Ok(raw)
    }

    /// Hands a changed `cfg` to the running encoder.
    fn apply_config(&mut self) -> Result<(), Vp8Error> {
        // SAFETY: the context is initialised, and libvpx copies the configuration it is given.
        let status = unsafe { vpx_codec_enc_config_set(&mut *self.ctx, &*self.cfg) };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Vp8Error::Config(context_error(&mut self.ctx)));
        }
        Ok(())
    }

    fn control_int(&mut self, id: vp8e_enc_control_id, value: c_int) -> Result<(), Vp8Error> {
        // SAFETY: the context is initialised and the controls passed here take an `int`.
        let status = unsafe { vpx_sys::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        self.control_status(id, status)
    }

    fn control_uint(&mut self, id: vp8e_enc_control_id, value: c_uint) -> Result<(), Vp8Error> {
        // SAFETY: the context is initialised and the controls passed here take an `unsigned int`.
        let status = unsafe { vpx_sys::vpx_codec_control_(&mut *self.ctx, id as c_int, value) };
        self.control_status(id, status)
    }

    fn control_status(&mut self, id: vp8e_enc_control_id, status: vpx_codec_err_t) -> Result<(), Vp8Error> {
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Vp8Error::Config(format!("libvpx refused {id:?}: {}", context_error(&mut self.ctx))));
        }
        Ok(())
    }

    /// Encodes one frame whose size is the encoder's and whose planes were checked; returns its
    /// bitstream and whether it is a keyframe, or `None` when rate control dropped it.
    fn encode(
        &mut self,
        frame: &VideoFrame,
        (y_stride, uv_stride): (c_int, c_int),
        pts: i64,
        duration: i64,
        flags: c_long,
    ) -> Result<Option<(Vec<u8>, bool)>, Vp8Error> {
        // SAFETY: all-zero bytes are a valid `vpx_image_t` (format, colour space and range 0 are
        // named values, the rest are numbers and null pointers); the fields that matter are set
        // below.
        let mut image: vpx_image_t = unsafe { std::mem::zeroed() };
        image.fmt = vpx_img_fmt::VPX_IMG_FMT_I420;
        image.cs = vpx_color_space::VPX_CS_BT_601;
        image.range = vpx_color_range::VPX_CR_STUDIO_RANGE;
        image.w = frame.width as c_uint;
        image.h = frame.height as c_uint;
        image.d_w = frame.width as c_uint;
        image.d_h = frame.height as c_uint;
        image.bit_depth = 8;
        image.bps = 12;
        image.x_chroma_shift = 1;
        image.y_chroma_shift = 1;
        // libvpx only reads the planes of an input picture.
        image.planes =
            [frame.y.as_ptr().cast_mut(), frame.u.as_ptr().cast_mut(), frame.v.as_ptr().cast_mut(), ptr::null_mut()];
        image.stride = [y_stride, uv_stride, uv_stride, 0];
        // SAFETY: the context is initialised for this picture size; `check_planes` showed that
        // each plane holds its rows at its stride, so libvpx reads only inside the frame's
        // buffers, which outlive the call (the encoder copies the picture before returning, as
        // it keeps no frames with a lag of 0).
        let status = unsafe {
            vpx_codec_encode(&mut *self.ctx, &image, pts, duration as c_ulong, flags, c_ulong::from(VPX_DL_REALTIME))
        };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Vp8Error::Encode(context_error(&mut self.ctx)));
        }
        let mut out: Option<(Vec<u8>, bool)> = None;
        let mut iter: vpx_codec_iter_t = ptr::null();
        loop {
            // SAFETY: the context is initialised, and `iter` starts null as libvpx requires.
            let packet = unsafe { vpx_codec_get_cx_data(&mut *self.ctx, &mut iter) };
            if packet.is_null() {
                break;
            }
            // SAFETY: non-null, and libvpx keeps the packet valid until the next call on the
            // context; nothing here calls it before the data is copied.
            let packet = unsafe { &*packet };
            if packet.kind != vpx_codec_cx_pkt_kind::VPX_CODEC_CX_FRAME_PKT {
                continue;
            }
            // SAFETY: a frame packet's `data` holds the `frame` member of the union.
            let data = unsafe { packet.data.frame };
            if data.buf.is_null() || data.sz == 0 {
                continue;
            }
            if out.is_some() {
                return Err(Vp8Error::Encode("libvpx returned two frames for one picture".into()));
            }
            let len = usize::try_from(data.sz).map_err(|_| Vp8Error::Encode("frame too large".into()))?;
            // SAFETY: libvpx's frame packet points at `sz` bytes it owns until the next call on
            // the context; they are copied here.
            let bytes = unsafe { std::slice::from_raw_parts(data.buf.cast::<u8>(), len) };
            out = Some((bytes.to_vec(), data.flags & VPX_FRAME_IS_KEY != 0));
        }
        Ok(out)
    }
}

impl Drop for RawEncoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed only here, once.
        unsafe { vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// A VP8 decoder taking one frame at a time.
pub struct Decoder {
    /// Boxed so that its address never changes while libvpx holds it.
    ctx: Box<vpx_codec_ctx_t>,
}

// SAFETY: a libvpx context has no tie to the thread that made it; `Decoder` owns its context
// alone and every use goes through `&mut self`, so moving it to another thread is sound.
unsafe impl Send for Decoder {}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    pub fn new() -> Result<Self, Vp8Error> {
        let cfg = vpx_codec_dec_cfg_t { threads: 1, w: 0, h: 0 };
        // SAFETY: all-zero bytes are a valid `vpx_codec_ctx_t` (null pointers, status OK, no
        // flags): the state libvpx expects of a context before initialisation.
        let mut ctx: Box<vpx_codec_ctx_t> = Box::new(unsafe { std::mem::zeroed() });
        // SAFETY: `ctx` is boxed and stays in place; libvpx copies `cfg` during the call; the ABI
        // version is the one the bindings were generated for.
        let status =
            unsafe { vpx_codec_dec_init_ver(&mut *ctx, vpx_codec_vp8_dx(), &cfg, 0, VPX_DECODER_ABI_VERSION as c_int) };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            // A failed initialisation leaves nothing to free.
            return Err(Vp8Error::Init(status_text(status)));
        }
        Ok(Self { ctx })
    }

    /// Decodes one VP8 frame. `None` when it shows no picture. The picture's number and capture
    /// time are 0: the caller knows them from the stripe or the RTP timestamp. A frame that
    /// cannot be decoded correctly (corrupt, or referring to a lost or corrupt frame) is
    /// [`Vp8Error::Corrupt`]: ask the sender for a keyframe.
    pub fn decode(&mut self, data: &[u8]) -> Result<Option<VideoFrame>, Vp8Error> {
        if data.is_empty() {
            return Err(Vp8Error::Corrupt("empty frame".into()));
        }
        let Ok(len) = c_uint::try_from(data.len()) else {
            return Err(Vp8Error::Corrupt(format!("a frame of {} bytes", data.len())));
        };
        let mut info = vpx_codec_stream_info_t {
            sz: std::mem::size_of::<vpx_codec_stream_info_t>() as c_uint,
            w: 0,
            h: 0,
            is_kf: 0,
        };
        // SAFETY: `vpx_codec_vp8_dx` returns libvpx's static VP8 decoder interface; libvpx reads
        // at most `len` bytes of `data` and writes `info`, whose `sz` says how large it is.
        let peeked = unsafe { vpx_codec_peek_stream_info(vpx_codec_vp8_dx(), data.as_ptr(), len, &mut info) };
        if peeked == vpx_codec_err_t::VPX_CODEC_OK
            && info.is_kf != 0
            && (info.w > MAX_DECODE_SIDE || info.h > MAX_DECODE_SIDE || info.w * info.h > MAX_DECODE_PIXELS)
        {
            return Err(Vp8Error::StreamTooLarge { width: info.w, height: info.h });
        }
        // SAFETY: the context is initialised; libvpx reads at most `len` bytes of `data` and
        // keeps no pointer into it after the call.
        let status = unsafe { vpx_codec_decode(&mut *self.ctx, data.as_ptr(), len, ptr::null_mut(), 0) };
        if status != vpx_codec_err_t::VPX_CODEC_OK {
            return Err(Vp8Error::Corrupt(context_error(&mut self.ctx)));
        }
        let mut corrupted: c_int = 0;
        // SAFETY: the context is initialised and VP8D_GET_FRAME_CORRUPTED takes an `int *`,
        // which points at a live local for the whole call.
        let status = unsafe {
            vpx_sys::vpx_codec_control_(
                &mut *self.ctx,
                vp8_dec_control_id::VP8D_GET_FRAME_CORRUPTED as c_int,
                &mut corrupted as *mut c_int,
            )
        };
        let mut iter: vpx_codec_iter_t = ptr::null();
        // SAFETY: the context is initialised, and `iter` starts null as libvpx requires.
        let image = unsafe { vpx_codec_get_frame(&mut *self.ctx, &mut iter) };
        if status == vpx_codec_err_t::VPX_CODEC_OK && corrupted != 0 {
            return Err(Vp8Error::Corrupt("decoded with errors (a reference is missing or corrupt)".into()));
        }
        if image.is_null() {
            return Ok(None);
        }
        // SAFETY: non-null, and the picture stays valid until the next call on the context;
        // `copy_image` copies it before returning.
        copy_image(unsafe { &*image }).map(Some)
    }
}

impl Drop for Decoder {
    fn drop(&mut self) {
        // SAFETY: the context was initialised in `new` and is destroyed only here, once.
        unsafe { vpx_codec_destroy(&mut *self.ctx) };
    }
}

/// Copies a decoded I420 picture into a [`VideoFrame`] with tight planes.
fn copy_image(image: &vpx_image_t) -> Result<VideoFrame, Vp8Error> {
    let bad = |what: &str| Vp8Error::Corrupt(format!("decoder returned a bad picture: {what}"));
    if image.fmt != vpx_img_fmt::VPX_IMG_FMT_I420 {
        return Err(bad("not I420"));
    }
    let (width, height) = (image.d_w as usize, image.d_h as usize);
    if width == 0 || height == 0 {
        return Err(bad("empty"));
    }
    let (cw, ch) = (width.div_ceil(2), height.div_ceil(2));
    let mut planes = Vec::with_capacity(3);
    for (index, (plane_width, rows)) in [(width, height), (cw, ch), (cw, ch)].into_iter().enumerate() {
        let pointer = image.planes[index];
        let stride = usize::try_from(image.stride[index]).map_err(|_| bad("negative stride"))?;
        if pointer.is_null() || stride < plane_width {
            return Err(bad("missing plane or short stride"));
        }
        // SAFETY: libvpx's picture holds `rows` rows of at least `plane_width` bytes, `stride`
        // bytes apart, in this plane; the slice covers exactly those bytes and is copied at once.
        let data = unsafe { std::slice::from_raw_parts(pointer.cast_const(), stride * (rows - 1) + plane_width) };
        planes.push(copy_plane(data, plane_width, rows, stride));
    }
    let (Some(v), Some(u), Some(y)) = (planes.pop(), planes.pop(), planes.pop()) else {
        return Err(bad("missing plane"));
    };
    VideoFrame::from_planes(width, height, (y, u, v), width, cw).map_err(|e| bad(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::media::pattern::PatternSource;
    use crate::media::stripe;

    fn encoder(bitrate_bps: u32) -> Encoder {
        Encoder::new(EncoderConfig { bitrate_bps, ..EncoderConfig::default() }).expect("valid config")
    }

    /// Capture time of frame `i` of a 30 fps source.
    fn capture_us(i: u32) -> u64 {
        1_764_000_000_000_000 + u64::from(i) * 33_333
    }

    /// Whether a VP8 frame's header says it is a key frame (RFC 6386, section 9.1).
    fn is_key_frame(data: &[u8]) -> bool {
        data.len() >= 10 && data[0] & 1 == 0 && data[3..6] == [0x9d, 0x01, 0x2a]
    }

    #[test]
    fn round_trip_at_640x480_keeps_number_and_capture_time() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut enc = encoder(1_000_000);
        let mut dec = Decoder::new().expect("decoder");
        let mut decoded = 0;
        for i in 0..60u32 {
            let frame = source.next_frame(capture_us(i));
            let Some(encoded) = enc.encode(&frame).expect("encodes") else { continue };
            assert_eq!((encoded.number, encoded.capture_us), (i, capture_us(i)));
            assert_eq!(encoded.keyframe, is_key_frame(&encoded.data), "frame {i}");
            assert_eq!(encoded.keyframe, i == 0, "frame {i}: a keyframe first, then none");
            let picture = dec.decode(&encoded.data).expect("decodes").expect("a picture");
            assert_eq!((picture.width, picture.height, picture.number, picture.capture_us), (640, 480, 0, 0));
            let read = stripe::read(&picture).expect("an intact stripe");
            assert_eq!((read.number, read.capture_us), (i, capture_us(i)));
            decoded += 1;
        }
        assert!(decoded >= 57, "only {decoded} of 60 frames were encoded");
    }

    #[test]
    fn bitrate_changes_while_running_are_obeyed() {
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let mut enc = encoder(1_000_000);
        let mut dec = Decoder::new().expect("decoder");
        let mut next = 0u32;
        let mut measure = |enc: &mut Encoder, frames: u32| {
            let mut bytes = 0;
            for _ in 0..frames {
                let frame = source.next_frame(capture_us(next));
                next += 1;
                if let Some(encoded) = enc.encode(&frame).expect("encodes") {
                    assert!(!encoded.keyframe || encoded.number == 0, "no keyframe on a bitrate change");
                    bytes += encoded.data.len();
                    let picture = dec.decode(&encoded.data).expect("decodes").expect("a picture");
                    assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(encoded.number));
                }
            }
            bytes as f64 / f64::from(frames)
        };
        measure(&mut enc, 30);
        let high = measure(&mut enc, 60);
        enc.set_bitrate(150_000).expect("lower");
        measure(&mut enc, 30);
        let low = measure(&mut enc, 60);
        enc.set_bitrate(1_000_000).expect("higher again");
        measure(&mut enc, 30);
        let high_again = measure(&mut enc, 60);
        let bps = |bytes_per_frame: f64| bytes_per_frame * 8.0 * 30.0;
        assert!(bps(low) < 200_000.0, "{:.0} bps after lowering to 150 kbps", bps(low));
        assert!(bps(high) > 700_000.0 && bps(high) < 1_200_000.0, "{:.0} bps at 1 Mbps", bps(high));
        assert!(high > 4.0 * low && high_again > 4.0 * low, "{high:.0} / {low:.0} / {high_again:.0} bytes a frame");
        assert!(enc.set_bitrate(0).is_err());
        enc.set_frame_rate(15.0).expect("15 fps");
        assert!(enc.set_frame_rate(0.0).is_err());
    }

    #[test]
    fn size_changes_restart_with_a_keyframe_and_decode_at_each_size() {
        let mut enc = encoder(500_000);
        let mut dec = Decoder::new().expect("decoder");
        let mut number = 0u32;
        for (width, height) in [(640, 480), (320, 240), (160, 120), (640, 480)] {
            let mut source = PatternSource::new(width, height, 30).expect("fits");
            for i in 0..10 {
                let mut frame = source.next_frame(capture_us(number));
                frame.number = number;
                stripe::paint(&mut frame, number, capture_us(number)).expect("the stripe fits");
                let encoded = enc.encode(&frame).expect("encodes").expect("no frame dropped at this bitrate");
                assert_eq!(encoded.keyframe, i == 0, "{width}x{height} frame {i}");
                let picture = dec.decode(&encoded.data).expect("decodes").expect("a picture");
                assert_eq!((picture.width, picture.height), (width, height));
                let read = stripe::read(&picture).expect("an intact stripe");
                assert_eq!((read.number, read.capture_us), (number, capture_us(number)));
                number += 1;
            }
        }
        // Odd sizes are VP8's too; nothing else is refused below 16384.
        let odd = enc.encode(&VideoFrame::black(161, 99)).expect("encodes").expect("a keyframe");
        let picture = dec.decode(&odd.data).expect("decodes").expect("a picture");
        assert_eq!((picture.width, picture.height, picture.u.len()), (161, 99, 81 * 50));
        assert!(matches!(enc.encode(&VideoFrame::black(16_384, 2)), Err(Vp8Error::UnsupportedSize { .. })));
        let mut broken = VideoFrame::black(64, 64);
        broken.y.truncate(100);
        assert!(matches!(enc.encode(&broken), Err(Vp8Error::Frame(_))));
        assert!(Encoder::new(EncoderConfig { frame_rate: 0.0, ..EncoderConfig::default() }).is_err());
    }

    #[test]
    fn forced_keyframes_arrive_on_the_next_frame() {
        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let mut enc = encoder(300_000);
        let mut keyframes = Vec::new();
        for i in 0..30u32 {
            if i == 20 {
                enc.force_keyframe();
            }
            if let Some(frame) = enc.encode(&source.next_frame(capture_us(i))).expect("encodes") {
                assert_eq!(frame.keyframe, is_key_frame(&frame.data));
                if frame.keyframe {
                    keyframes.push(frame.number);
                }
            }
        }
        assert_eq!(keyframes, vec![0, 20]);
    }

    #[test]
    fn periodic_keyframes_follow_the_interval() {
        let mut source = PatternSource::new(160, 120, 30).expect("fits");
        let config = EncoderConfig { keyframe_interval: 10, ..EncoderConfig::default() };
        let mut enc = Encoder::new(config).expect("encoder");
        let keyframes: Vec<u32> = (0..25)
            .filter_map(|i| enc.encode(&source.next_frame(capture_us(i))).expect("encodes"))
            .filter(|frame| frame.keyframe)
            .map(|frame| frame.number)
            .collect();
        assert_eq!(keyframes, vec![0, 10, 20]);
    }

    #[test]
    fn corrupt_and_foreign_input_gives_errors_not_panics() {
        let mut dec = Decoder::new().expect("decoder");
        assert!(matches!(dec.decode(b""), Err(Vp8Error::Corrupt(_))));
        assert!(matches!(dec.decode(b"hello"), Err(Vp8Error::Corrupt(_))));

        let mut source = PatternSource::new(320, 240, 30).expect("fits");
        let mut enc = encoder(300_000);
        let key = enc.encode(&source.next_frame(capture_us(0))).expect("encodes").expect("a frame");
        let delta = enc.encode(&source.next_frame(capture_us(1))).expect("encodes").expect("a frame");
        // A delta frame without its keyframe cannot be decoded.
        let mut fresh = Decoder::new().expect("decoder");
        assert!(matches!(fresh.decode(&delta.data), Err(Vp8Error::Corrupt(_))));

        // A truncated keyframe and one with its data scrambled.
        let mut dec = Decoder::new().expect("decoder");
        assert!(matches!(dec.decode(&key.data[..key.data.len() / 2]), Err(Vp8Error::Corrupt(_))));
        let mut scrambled = key.data.clone();
        let len = scrambled.len();
        for b in &mut scrambled[len / 3..] {
            *b ^= 0x5a;
        }
        if let Ok(Some(picture)) = dec.decode(&scrambled) {
            assert_eq!(picture.width, 320);
        }
        // A keyframe header claiming a huge picture is refused before libvpx allocates for it.
        let mut huge = key.data.clone();
        huge[6..10].copy_from_slice(&[0xff, 0x3f, 0xff, 0x3f]);
        assert!(matches!(dec.decode(&huge), Err(Vp8Error::StreamTooLarge { width: 16383, height: 16383 })));

        // The decoder recovers at the next keyframe, and a frame after a lost one is reported.
        let mut dec = Decoder::new().expect("decoder");
        enc.force_keyframe();
        let key2 = enc.encode(&source.next_frame(capture_us(2))).expect("encodes").expect("a frame");
        let picture = dec.decode(&key2.data).expect("decodes").expect("a picture");
        assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(2));
        let _lost = enc.encode(&source.next_frame(capture_us(3))).expect("encodes").expect("a frame");
        let after = enc.encode(&source.next_frame(capture_us(4))).expect("encodes").expect("a frame");
        let mut truncated = after.data.clone();
        truncated.truncate(truncated.len() * 2 / 3);
        assert!(dec.decode(&truncated).is_err(), "a truncated frame is an error");
        // The next delta frame refers to a frame the decoder lost: corrupt, not a wrong picture.
        let next = enc.encode(&source.next_frame(capture_us(5))).expect("encodes").expect("a frame");
        assert!(matches!(dec.decode(&next.data), Err(Vp8Error::Corrupt(_))));
        enc.force_keyframe();
        let key3 = enc.encode(&source.next_frame(capture_us(6))).expect("encodes").expect("a frame");
        let picture = dec.decode(&key3.data).expect("decodes").expect("a picture");
        assert_eq!(stripe::read(&picture).map(|s| s.number), Ok(6));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever bytes arrive, the decoder answers without panicking, also after a real
        /// keyframe set it up.
        #[test]
        fn the_decoder_survives_garbage(
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            flip in proptest::collection::vec((0usize..4000, proptest::num::u8::ANY), 0..20),
        ) {
            let mut dec = Decoder::new().expect("decoder");
            let _ = dec.decode(&data);
            let mut key = KEYFRAME.with(Clone::clone);
            let _ = dec.decode(&key);
            for (at, bits) in flip {
                let len = key.len();
                key[at % len] ^= bits;
            }
            let _ = dec.decode(&key);
            let _ = dec.decode(&data);
        }
    }

    thread_local! {
        /// A real 160x120 keyframe for the garbage test to damage.
        static KEYFRAME: Vec<u8> = {
            let mut source = PatternSource::new(160, 120, 30).expect("fits");
            encoder(200_000).encode(&source.next_frame(1)).expect("encodes").expect("a keyframe").data
        };
    }

    /// CPU time this thread has used (Linux), so that a busy machine does not inflate the
    /// figures; wall-clock time where it cannot be read.
    fn thread_time() -> Duration {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|stat| stat.split_whitespace().next()?.parse().ok())
            .map_or_else(|| Instant::now().duration_since(*EPOCH), Duration::from_nanos)
    }

    static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

    /// Encode and decode times at 640x480 and 1 Mbps (the thread's CPU time), beside OpenH264's
    /// when it is built in; `cargo test -- --ignored --nocapture timing_at_640x480` prints them.
    /// `STRANGERS_TIMING_BPS` sets another bitrate and `STRANGERS_TIMING_CODEC` (`VP8`, `H264`)
    /// one codec, for instruction counts under valgrind.
    #[test]
    #[ignore = "a measurement, not a check"]
    fn timing_at_640x480() {
        let bitrate_bps = std::env::var("STRANGERS_TIMING_BPS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
        let only = std::env::var("STRANGERS_TIMING_CODEC").ok();
        let mut source = PatternSource::new(640, 480, 30).expect("fits");
        let frames: Vec<VideoFrame> = (0..300).map(|i| source.next_frame(capture_us(i))).collect();
        for codec in crate::media::video_codec::VideoCodec::all_available() {
            if only.as_deref().is_some_and(|name| name != codec.to_string()) {
                continue;
            }
            let config = EncoderConfig { bitrate_bps, ..EncoderConfig::default() };
            let mut enc = crate::media::video_codec::VideoEncoder::new(*codec, config).expect("encoder");
            let mut dec = crate::media::video_codec::VideoDecoder::new(*codec).expect("decoder");
            let (mut encode_time, mut decode_time, mut decoded, mut bytes) = (Duration::ZERO, Duration::ZERO, 0u32, 0);
            for frame in &frames {
                let start = thread_time();
                let encoded = enc.encode(frame).expect("encodes");
                encode_time += thread_time() - start;
                if let Some(encoded) = encoded {
                    bytes += encoded.data.len();
                    let start = thread_time();
                    let picture = dec.decode(&encoded.data).expect("decodes");
                    decode_time += thread_time() - start;
                    assert!(picture.is_some());
                    decoded += 1;
                }
            }
            let encode_ms = encode_time.as_secs_f64() * 1000.0 / frames.len() as f64;
            let decode_ms = decode_time.as_secs_f64() * 1000.0 / f64::from(decoded.max(1));
            let kbps = bytes as f64 * 8.0 * 30.0 / frames.len() as f64 / 1000.0;
            println!(
                "{codec} 640x480 at {bitrate_bps} bps: encode {encode_ms:.2} ms/frame, decode {decode_ms:.2} ms/frame, \
                 {decoded} of {} frames, {kbps:.0} kbps",
                frames.len()
            );
        }
    }
}
