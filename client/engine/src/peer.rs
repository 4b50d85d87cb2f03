//! The WebRTC peer connection of one call (webrtc-rs 0.21): H.264 and Opus registered, NACK,
//! RTCP reports, transport-wide congestion control with a GCC estimate the video encoder
//! follows, a keyframe-request tap, a `chat` data channel, trickle ICE. It turns the partner's
//! signals into calls on the connection and the connection's events into [`PeerEvent`]s.
//! The DTLS fingerprint is always verified (the setting that disables it is never touched).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{BandwidthEstimator, EstimatorStats, NackGeneratorBuilder, PacketReport, Slot};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{configure_congestion_control, CongestionFeedback};
use rtc::peer_connection::configuration::media_engine::MIME_TYPE_OPUS;
use rtc::peer_connection::configuration::RTCOfferOptions;
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use rtc::rtp_transceiver::PayloadType;
use strangers_protocol::{IceServer, SignalData};
use tokio::sync::mpsc;
use tracing::debug;
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    register_default_interceptors, MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceConnectionState, RTCIceServer, RTCIceTransportPolicy, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSdpType, RTCSessionDescription, Registry, SettingEngineBuilder,
};
use webrtc::rtp_transceiver::RtpSender;

use crate::candidate_privacy;
use crate::congestion::{CongestionConfig, CongestionController, PacketFate};
use crate::host_addresses;
use crate::keyframe_tap::KeyframeTap;
use crate::media::video_codec::VideoCodec;
use crate::retransmit_budget::BudgetGate;
use crate::send_budget::SendBudget;
use crate::turn_bridge::{self, Bridges, RelayedVia, TurnTls};

/// The H.264 flavour browsers expect: constrained baseline, packetization mode 1.
pub const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
const VP8_PT: PayloadType = 96;
const H264_PT: PayloadType = 102;
pub(crate) const OPUS_PT: PayloadType = 111;
/// How long the controlling ICE agent waits after a direct pair works before nominating it.
const NOMINATION_DELAY: Duration = Duration::from_millis(15);
/// How long the controlling agent lets direct pairs prove themselves before it accepts a
/// relayed one (counted from the start of the checks). A relayed pair accepted sooner is not
/// final: the checks of the other pairs go on, and a direct pair that works later is nominated
/// in its place (`patches/rtc-ice`), so the wait only spares a direct call a switch of path
/// in its first moments; a direct pair has usually won within 100 ms in the lab.
const RELAY_WAIT: Duration = Duration::from_millis(150);
/// Silence on the selected pair before ICE reports it disconnected, then further silence before
/// it reports failure (which starts an ICE restart), and the keepalive that keeps an idle pair
/// and its NAT mappings alive. webrtc-rs defaults to 5 s + 25 s: a frozen call for half a minute
/// before any repair. Media counts as activity, so a live call never idles into these.
const ICE_DISCONNECTED_AFTER: Duration = Duration::from_secs(3);
const ICE_FAILED_AFTER: Duration = Duration::from_secs(2);
const ICE_KEEPALIVE: Duration = Duration::from_secs(1);
/// How often a missing video packet is asked for (NACK), and how many times at most.
const NACK_INTERVAL: Duration = Duration::from_millis(20);
const MAX_NACKS_PER_PACKET: u16 = 3;
/// The label of the chat data channel.
pub const CHAT_LABEL: &str = "chat";

/// How to build a peer connection (the ICE servers come from each `welcome`).
#[derive(Debug, Clone)]
pub struct PeerSettings {
    /// Relay candidates only: the partner never learns our address.
    pub relay_only: bool,
    /// Local address to gather host candidates on (`0.0.0.0` for every interface, IPv4 and
    /// IPv6 alike).
    pub bind_ip: IpAddr,
    /// Offer loopback candidates (tests on one machine).
    pub include_loopback: bool,
    /// Time between ICE connectivity checks; browsers use 50 ms pacing, webrtc-rs 200 ms.
    pub ice_check_interval: Duration,
    /// Send bitrates (bits per second, audio and video together) the congestion controller
    /// starts at and stays within.
    pub bitrate_start: u32,
    pub bitrate_min: u32,
    pub bitrate_max: u32,
    /// The video codecs we offer and accept, most preferred first. The answerer takes the first
    /// one both sides have, in the offerer's order.
    pub video_codecs: Vec<VideoCodec>,
    /// How `turns:` servers are verified.
    pub turn_tls: TurnTls,
}

/// What the peer connection reports.
pub enum PeerEvent {
    /// A description or candidate to send to the partner.
    LocalSignal(SignalData),
    /// The type of a local candidate just gathered (host, srflx, prflx, relay).
    LocalCandidate(String),
    IceState(RTCIceConnectionState),
    State(RTCPeerConnectionState),
    Track(Arc<dyn TrackRemote>),
    DataChannel(Arc<dyn DataChannel>),
    /// An ICE server that cannot be used, and why (never its credentials).
    IceServerProblem(String),
}

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("WebRTC: {0}")]
    WebRtc(#[from] webrtc::error::Error),
    #[error("the partner sent an unusable signal: {0}")]
    BadSignal(String),
    /// The partner offered a new SDP session: it renewed its peer connection, and the offer
    /// is for a new connection on our side too.
    #[error("the partner offered a new session")]
    NewSession,
}

/// Our signals on their way to the partner. Candidates gathered while a description of ours is
/// being made are held back until it is sent, so the partner never gets a candidate before the
/// description it belongs to (for a renewed connection it would reach the old one, for an ICE
/// restart the old ICE generation). It is also where our addresses are made fit for a
/// stranger ([`candidate_privacy`]), in candidates and descriptions alike.
struct Outbox {
    events: mpsc::UnboundedSender<PeerEvent>,
    /// `Some` while a description is being made: the candidates held until it is sent.
    held: Mutex<Option<Vec<SignalData>>>,
    /// We gather on one address the user chose (`bind_ip`): it is offered as it is.
    chosen_address: bool,
}

impl Outbox {
    fn new(events: mpsc::UnboundedSender<PeerEvent>, chosen_address: bool) -> Self {
        Outbox { events, held: Mutex::new(None), chosen_address }
    }

    /// Holds candidates from now until the next description is sent.
    fn hold(&self) {
        self.held.lock().expect("the outbox lock is never poisoned").get_or_insert_with(Vec::new);
    }

    /// Sends a local candidate as a stranger may see it (after its description).
    fn candidate(&self, mut init: webrtc::peer_connection::RTCIceCandidateInit) {
        if !self.chosen_address {
            match candidate_privacy::shareable(&init.candidate) {
                Some(shared) => init.candidate = shared,
                None => return debug!("a host candidate on a private network is not shared"),
            }
        }
        let data = match serde_json::to_string(&init)
            .map(|json| SignalData::from_json(&format!(r#"{{"candidate":{json}}}"#)))
        {
            Ok(Ok(data)) => data,
            Ok(Err(e)) => return debug!(error = %e, "local candidate not sendable"),
            Err(e) => return debug!(error = %e, "local candidate not serialisable"),
        };
        let mut held = self.held.lock().expect("the outbox lock is never poisoned");
        match held.as_mut() {
            Some(waiting) => waiting.push(data),
            None => {
                let _ = self.events.send(PeerEvent::LocalSignal(data));
            }
        }
    }

    /// Sends a description (its candidate lines as a stranger may see them), then the
    /// candidates held for it.
    fn description(&self, desc: &RTCSessionDescription) {
        let kind = if desc.sdp_type == RTCSdpType::Offer { "offer" } else { "answer" };
        let sdp = if self.chosen_address { desc.sdp.clone() } else { candidate_privacy::shareable_sdp(&desc.sdp) };
        let json = serde_json::json!({ "sdp": { "type": kind, "sdp": sdp } }).to_string();
        if let Ok(data) = SignalData::from_json(&json) {
            let _ = self.events.send(PeerEvent::LocalSignal(data));
        }
        self.release();
    }

    /// Sends the held candidates (after their description, or when making it failed).
    fn release(&self) {
        let mut held = self.held.lock().expect("the outbox lock is never poisoned");
        for candidate in held.take().unwrap_or_default() {
            let _ = self.events.send(PeerEvent::LocalSignal(candidate));
        }
    }
}

/// One call's peer connection and its two outgoing tracks.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    /// Video is packetized and paced by the sender (for whichever codec was negotiated).
    pub video: Arc<TrackLocalStaticRTP>,
    video_ssrc: u32,
    pub audio: Arc<TrackLocalStaticSample>,
    video_sender: Option<Arc<dyn RtpSender>>,
    audio_sender: Option<Arc<dyn RtpSender>>,
    initiator: bool,
    video_codecs: Vec<VideoCodec>,
    /// What the congestion controller lets us send.
    budget: Arc<SendBudget>,
    /// Candidates that arrived before the remote description.
    early_candidates: Vec<webrtc::peer_connection::RTCIceCandidateInit>,
    events: mpsc::UnboundedSender<PeerEvent>,
    outbox: Arc<Outbox>,
    /// TURN over TCP and TLS for this connection (stopped with it).
    bridges: Bridges,
}

struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    outbox: Arc<Outbox>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        let _ = self.events.send(PeerEvent::LocalCandidate(event.candidate.typ.to_string()));
        match event.candidate.to_json() {
            Ok(init) => self.outbox.candidate(init),
            Err(e) => debug!(error = %e, "local candidate not convertible"),
        }
    }

    async fn on_ice_connection_state_change(&self, state: RTCIceConnectionState) {
        let _ = self.events.send(PeerEvent::IceState(state));
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        let _ = self.events.send(PeerEvent::State(state));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let _ = self.events.send(PeerEvent::Track(track));
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        let _ = self.events.send(PeerEvent::DataChannel(channel));
    }
}

/// Our congestion controller as webrtc-rs's estimator: the partner's feedback in, the estimate
/// published after every batch where the video sender reads it, and checked every
/// [`STALL_CHECK`] for feedback that stopped coming.
struct PublishingEstimator {
    controller: CongestionController,
    budget: Arc<SendBudget>,
    next_check: Instant,
}

/// How often the estimator checks that feedback still comes.
const STALL_CHECK: Duration = Duration::from_millis(50);

impl BandwidthEstimator for PublishingEstimator {
    fn on_reports(&mut self, now: Instant, reports: &[PacketReport]) {
        let fates: Vec<PacketFate> = reports
            .iter()
            .map(|r| PacketFate {
                departure: r.departure,
                arrival: if r.arrived { r.arrival } else { None },
                size: r.size,
            })
            .collect();
        self.controller.on_feedback(now, &fates);
        tracing::trace!(
            reports = fates.len(),
            estimate = self.controller.estimate(),
            queue_ms = self.controller.queue_delay().map(|q| q.as_secs_f64() * 1000.0),
            loss = self.controller.loss(),
            trend = ?self.controller.trend(),
            "congestion feedback"
        );
        self.budget.set_estimate(self.controller.estimate());
        if self.controller.arrival_rate().is_some() {
            self.budget.set_measured();
        }
    }
    fn target_bitrate(&self) -> f64 {
        self.controller.estimate()
    }
    fn handle_timeout(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        self.next_check = now + STALL_CHECK;
        self.controller.on_timeout(now, self.budget.last_sent());
        self.budget.set_estimate(self.controller.estimate());
    }
    fn poll_timeout(&self) -> Option<Instant> {
        Some(self.next_check)
    }
    fn stats(&self) -> EstimatorStats {
        EstimatorStats::default()
    }
}

/// How host candidates are named, and whether the partner's `.local` names are resolved.
/// mDNS needs the multicast group 224.0.0.251, which a host without a multicast route (no
/// default route: a VPN-only host, a LAN with no gateway, a container) cannot join; webrtc-rs
/// then fails the whole connection, so mDNS is turned off there (our private host candidates
/// are then simply not shared). Otherwise our LAN address (the one multicast leaves from) goes
/// out under a random `.local` name, which only a client on the same LAN can resolve.
fn multicast_dns(bind_ip: IpAddr) -> (MulticastDnsMode, Option<IpAddr>) {
    if let Err(e) = rtc::mdns::MulticastSocket::new().into_std() {
        debug!(error = %e, "no multicast here: mDNS is off");
        return (MulticastDnsMode::Disabled, None);
    }
    // An address the user chose to gather on is offered as it is (see `Handler`).
    if !bind_ip.is_unspecified() {
        return (MulticastDnsMode::QueryOnly, None);
    }
    match multicast_source_ip() {
        Some(ip @ IpAddr::V4(_)) if candidate_privacy::is_private(ip) => (MulticastDnsMode::QueryAndGather, Some(ip)),
        _ => (MulticastDnsMode::QueryOnly, None),
    }
}

/// The local address multicast to the mDNS group leaves from (a route lookup: nothing is sent).
fn multicast_source_ip() -> Option<IpAddr> {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect((rtc::mdns::MDNS_MULTICAST_IPV4, rtc::mdns::MDNS_PORT)).ok()?;
    Some(socket.local_addr().ok()?.ip())
}

/// How a video codec is registered and offered (its payload type and format parameters).
pub(crate) fn video_codec_parameters(codec: VideoCodec) -> RTCRtpCodecParameters {
    let (sdp_fmtp_line, payload_type) = match codec {
        VideoCodec::Vp8 => (String::new(), VP8_PT),
        VideoCodec::H264 => (H264_FMTP.to_owned(), H264_PT),
    };
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: codec.mime_type().to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line,
            rtcp_feedback: vec![],
        },
        payload_type,
    }
}

pub(crate) fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1;usedtx=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// A local track of `kind` sending on `ssrc`; with `codec`, that codec only, else every
/// registered one.
fn media_track(kind: RtpCodecKind, ssrc: u32, codec: Option<RTCRtpCodec>) -> MediaStreamTrack {
    let name = match kind {
        RtpCodecKind::Audio => "audio",
        _ => "video",
    };
    // Track ids must differ from the partner's: feedback about a track is routed by its id,
    // and a remote track with the same id would take our keyframe requests.
    MediaStreamTrack::new(
        format!("strangers-{ssrc:08x}"),
        format!("strangers-{name}-{ssrc:08x}"),
        format!("strangers {name}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters { ssrc: Some(ssrc), ..Default::default() },
            codec: codec.unwrap_or_default(),
            ..Default::default()
        }],
    )
}

impl Default for PeerSettings {
    fn default() -> Self {
        PeerSettings {
            relay_only: false,
            bind_ip: IpAddr::from([0, 0, 0, 0]),
            include_loopback: false,
            ice_check_interval: Duration::from_millis(20),
            bitrate_start: 300_000,
            bitrate_min: 60_000,
            bitrate_max: 2_700_000,
            video_codecs: VideoCodec::all_available().to_vec(),
            turn_tls: TurnTls::default(),
        }
    }
}

impl Peer {
    /// Builds the connection. The initiator adds its tracks and the chat channel and sends its
    /// offer at once; the other side waits for the offer.
    pub async fn start(
        settings: &PeerSettings,
        ice_servers: &[IceServer],
        initiator: bool,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<Peer, PeerError> {
        let mut media = MediaEngine::default();
        if settings.video_codecs.is_empty() {
            return Err(PeerError::BadSignal("no video codec to offer".into()));
        }
        for codec in &settings.video_codecs {
            media.register_codec(video_codec_parameters(*codec), RtpCodecKind::Video)?;
        }
        media.register_codec(
            RTCRtpCodecParameters { rtp_codec: opus_codec(), payload_type: OPUS_PT },
            RtpCodecKind::Audio,
        )?;
        let budget = Arc::new(SendBudget::new(f64::from(settings.bitrate_start)));
        let estimator = PublishingEstimator {
            controller: CongestionController::new(CongestionConfig {
                start_bps: f64::from(settings.bitrate_start),
                min_bps: f64::from(settings.bitrate_min),
                max_bps: f64::from(settings.bitrate_max),
            }),
            budget: budget.clone(),
            next_check: Instant::now() + STALL_CHECK,
        };
        let registry = configure_congestion_control(Registry::new(), estimator, CongestionFeedback::Twcc, &mut media)?;
        // No pacer: the encoder already holds the estimated rate, and webrtc-rs's pacer queues
        // NACK retransmissions behind media, so under loss they came too late to repair
        // anything (5 % loss: 5 fps with it, 28 fps without; tests/tests/loss.rs). Its slot
        // holds retransmissions to a share of the estimate instead.
        let registry = registry.with(Slot::Pacer, BudgetGate::new(budget.clone()));
        let registry = register_default_interceptors(registry, &mut media)?;
        // A missing packet is asked for every 20 ms (not webrtc-rs's 100 ms: at 5 % loss a lost
        // request or retransmission then still has two more chances within the jitter
        // buffer's wait, instead of costing a keyframe), and three times at most: a generator
        // that asks forever turns a burst of loss on a full router queue into a flood of
        // retransmissions that keeps the queue full (1 Mbit/s with a 50-packet queue:
        // thousands of drops and a call stuck at its floor).
        let registry = registry.with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(MAX_NACKS_PER_PACKET)
                .build(),
        );
        let registry = registry.with(Slot::from(14_000), KeyframeTap::marking());

        let report_events = events.clone();
        let report: turn_bridge::Report = Arc::new(move |problem| {
            let _ = report_events.send(PeerEvent::IceServerProblem(problem));
        });
        let binds = host_addresses::udp_binds(settings.bind_ip, &host_addresses::interface_ips());
        let (ice_servers, bridges, unusable) =
            turn_bridge::prepare(ice_servers, &settings.turn_tls, &binds, report).await;
        for problem in unusable {
            let _ = events.send(PeerEvent::IceServerProblem(problem));
        }
        let ice_servers = ice_servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone().unwrap_or_default(),
                credential: s.credential.clone().unwrap_or_default(),
            })
            .collect();
        let policy = if settings.relay_only { RTCIceTransportPolicy::Relay } else { RTCIceTransportPolicy::All };
        let config =
            RTCConfigurationBuilder::new().with_ice_servers(ice_servers).with_ice_transport_policy(policy).build();
        // The answerer takes the DTLS server role, so the offerer starts the handshake. The
        // offerer only connects once it holds the answer, while an answerer acting as client
        // could send its first DTLS flight before the offerer is ready for it, and lose a
        // second to the retransmission timer.
        let (mdns_mode, mdns_ip) = multicast_dns(settings.bind_ip);
        let setting_engine = SettingEngineBuilder::new()
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_include_loopback_candidate(settings.include_loopback)
            // The controlling side waits a moment before nominating a direct pair, so the
            // controlled side has usually seen its own check succeed by the time the DTLS
            // handshake begins (a first flight lost to that race costs a 1 s retransmission).
            .with_host_acceptance_min_wait(Some(NOMINATION_DELAY))
            .with_srflx_acceptance_min_wait(Some(NOMINATION_DELAY))
            .with_prflx_acceptance_min_wait(Some(NOMINATION_DELAY))
            // A relayed pair is accepted only after 2 s by default, giving direct pairs a chance
            // first: a relayed call then takes 3 s to connect. Ours is accepted after
            // RELAY_WAIT and left for a direct pair that works later; with relay-only there
            // are none to wait for.
            .with_relay_acceptance_min_wait(Some(if settings.relay_only { NOMINATION_DELAY } else { RELAY_WAIT }))
            .with_ice_connection_attempts(Some(settings.ice_check_interval), Some(25))
            .with_ice_timeouts(Some(ICE_DISCONNECTED_AFTER), Some(ICE_FAILED_AFTER), Some(ICE_KEEPALIVE))
            .with_multicast_dns_mode(mdns_mode)
            .with_multicast_dns_local_ip(mdns_ip)
            .build();
        let outbox = Arc::new(Outbox::new(events.clone(), !settings.bind_ip.is_unspecified()));
        let pc = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(setting_engine)
            .with_interceptor_registry(registry)
            .with_handler(Arc::new(Handler { events: events.clone(), outbox: outbox.clone() }))
            .with_udp_addrs(binds)
            .build()
            .await?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let video_ssrc: u32 = rand::random();
        let mut peer = Peer {
            pc,
            // No codec named: the offer lists every registered video codec, in order.
            video: Arc::new(TrackLocalStaticRTP::new(media_track(RtpCodecKind::Video, video_ssrc, None))),
            video_ssrc,
            audio: Arc::new(TrackLocalStaticSample::new(
                Instant::now(),
                media_track(RtpCodecKind::Audio, rand::random(), Some(opus_codec())),
            )?),
            video_sender: None,
            audio_sender: None,
            initiator,
            video_codecs: settings.video_codecs.clone(),
            budget,
            early_candidates: Vec::new(),
            events,
            outbox,
            bridges,
        };
        if initiator {
            peer.add_tracks().await?;
            let channel = peer.pc.create_data_channel(CHAT_LABEL, None).await?;
            let _ = peer.events.send(PeerEvent::DataChannel(channel));
            peer.offer(false).await?;
        }
        Ok(peer)
    }

    async fn add_tracks(&mut self) -> Result<(), PeerError> {
        self.video_sender = Some(self.pc.add_track(self.video.clone() as Arc<dyn TrackLocal>).await?);
        self.audio_sender = Some(self.pc.add_track(self.audio.clone() as Arc<dyn TrackLocal>).await?);
        Ok(())
    }

    async fn offer(&self, ice_restart: bool) -> Result<(), PeerError> {
        self.describe(Some(RTCOfferOptions { ice_restart })).await
    }

    /// Makes our next description (an offer with `offer`'s options, else an answer), sets it
    /// and sends it, the candidates gathered meanwhile after it.
    async fn describe(&self, offer: Option<RTCOfferOptions>) -> Result<(), PeerError> {
        self.outbox.hold();
        let made = async {
            let desc = match offer {
                Some(options) => self.pc.create_offer(Some(options)).await?,
                None => self.pc.create_answer(None).await?,
            };
            self.pc.set_local_description(desc.clone()).await?;
            Ok(desc)
        };
        match made.await {
            Ok(desc) => {
                self.outbox.description(&desc);
                Ok(())
            }
            Err(e) => {
                self.outbox.release();
                Err(e)
            }
        }
    }

    /// Applies the partner's description or candidate.
    pub async fn apply(&mut self, data: &SignalData) -> Result<(), PeerError> {
        match read_signal(data.as_json())? {
            Some(RemoteSignal::Description(desc)) => self.apply_description(*desc).await,
            Some(RemoteSignal::Candidate(Some(init))) => {
                if self.pc.remote_description().await.is_none() {
                    self.early_candidates.push(init);
                } else if let Err(e) = self.pc.add_ice_candidate(init).await {
                    // One bad candidate does not end a call; others may work.
                    debug!(error = %e, "candidate refused");
                }
                Ok(())
            }
            Some(RemoteSignal::Unusable(why)) => {
                // One bad candidate does not end a call; others may work.
                debug!(why, "candidate refused");
                Ok(())
            }
            Some(RemoteSignal::Candidate(None)) | None => Ok(()),
        }
    }

    /// Applies the partner's offer or answer.
    async fn apply_description(&mut self, desc: RTCSessionDescription) -> Result<(), PeerError> {
        let is_offer = desc.sdp_type == RTCSdpType::Offer;
        if is_offer && self.initiator {
            return Err(PeerError::BadSignal("the initiator received an offer".into()));
        }
        if is_offer {
            if let Some(current) = self.pc.remote_description().await {
                if sdp_session_id(&current.sdp) != sdp_session_id(&desc.sdp) {
                    return Err(PeerError::NewSession);
                }
            }
        }
        // The codec our outstanding offer put first, for an answer.
        let mut offered_first = None;
        if !is_offer {
            let Some(offer) = self.pc.pending_local_description().await else {
                // An answer to an offer already answered: a restart asked for again after its
                // first offer seemed lost, whose answer came after all. Nothing to apply.
                debug!("stale answer ignored");
                return Ok(());
            };
            offered_first = first_video_codec(&offer.sdp, &self.video_codecs);
        }
        // The codec this description settles, known before our sender starts sending: the
        // first of the answer's video codecs, which is the first of the offer's we have.
        let video_codec = first_video_codec(&desc.sdp, &self.video_codecs);
        if !is_offer {
            self.bind_video_codec(video_codec).await?;
        }
        self.pc.set_remote_description(desc).await.map_err(|e| PeerError::BadSignal(format!("{e}")))?;
        if is_offer {
            if self.video_sender.is_none() {
                self.add_tracks().await?;
            }
            self.bind_video_codec(video_codec).await?;
            self.describe(None).await?;
        }
        for candidate in std::mem::take(&mut self.early_candidates) {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                debug!(error = %e, "early candidate refused");
            }
        }
        self.check_codecs().await?;
        if !is_offer && video_codec.is_some() && video_codec != offered_first {
            // The answer settled on a codec other than our offer's first, yet the partner may
            // still send ours: an answer lists what its side prefers to receive, and a sender
            // follows the preferences of the receiver, here our offer's (Chromium answering
            // after setCodecPreferences with H.264 alone sends VP8). webrtc-rs receives only
            // the answer's codecs, so it would drop that video. A new offer lists just the
            // answer's codecs, in its order (webrtc-rs keeps them as the transceiver's
            // preferences), and the partner then sends the codec we send.
            debug!(?video_codec, ?offered_first, "offering again with the answer's video codecs");
            self.offer(false).await?;
        }
        Ok(())
    }

    /// After negotiation: a partner that offers neither of our codecs cannot be talked to.
    async fn check_codecs(&self) -> Result<(), PeerError> {
        let Some(sender) = &self.video_sender else { return Ok(()) };
        if self.pc.current_remote_description().await.is_none() || self.pc.current_local_description().await.is_none() {
            return Ok(());
        }
        match sender.get_parameters().await {
            Ok(params) if params.rtp_parameters.codecs.is_empty() => {
                let ours: Vec<&str> = self.video_codecs.iter().map(|c| c.name()).collect();
                Err(PeerError::BadSignal(format!("the partner offers no video codec we support ({})", ours.join(", "))))
            }
            _ => Ok(()),
        }
    }

    /// Names the negotiated codec on our video sender's track. The track is made with no codec,
    /// so that the offer lists every codec we have; webrtc-rs attaches its RTP machinery (NACK,
    /// reports, congestion feedback) only to a track whose codec was negotiated, and does so
    /// when the sender starts, so this must come before the description that starts it.
    async fn bind_video_codec(&self, codec: Option<VideoCodec>) -> Result<(), PeerError> {
        let (Some(sender), Some(codec)) = (&self.video_sender, codec) else { return Ok(()) };
        let track = media_track(RtpCodecKind::Video, self.video_ssrc, Some(video_codec_parameters(codec).rtp_codec));
        sender.replace_track(Arc::new(TrackLocalStaticRTP::new(track))).await?;
        Ok(())
    }

    /// Starts an ICE restart (the initiator only; the other side asks for one).
    pub async fn restart_ice(&self) -> Result<(), PeerError> {
        if self.initiator {
            self.offer(true).await?;
        }
        Ok(())
    }

    /// What congestion control lets us send.
    pub(crate) fn budget(&self) -> Arc<SendBudget> {
        self.budget.clone()
    }

    /// The congestion estimate (bits per second), once it rests on the partner's feedback.
    pub fn measured_estimate(&self) -> Option<f64> {
        self.budget.measured()
    }

    pub fn connection(&self) -> Arc<dyn PeerConnection> {
        self.pc.clone()
    }

    /// Which of our relayed addresses reach their TURN server over TCP or TLS.
    pub fn relayed_via(&self) -> RelayedVia {
        self.bridges.relayed.clone()
    }

    pub async fn close(&self) {
        let _ = self.pc.close().await;
    }
}

/// A signal from the partner, read.
#[derive(Debug)]
pub(crate) enum RemoteSignal {
    /// An offer or an answer, its SDP parsed.
    Description(Box<RTCSessionDescription>),
    /// A trickled candidate; `None` marks the end of candidates.
    Candidate(Option<webrtc::peer_connection::RTCIceCandidateInit>),
    /// A candidate that must not reach webrtc-rs, and why.
    Unusable(&'static str),
}

/// Reads the text of a partner's signal: a description (its SDP parsed by webrtc-rs) or a
/// candidate; `None` for a signal that carries neither. A stranger may send anything: every
/// failure is a [`PeerError::BadSignal`].
pub(crate) fn read_signal(json: &str) -> Result<Option<RemoteSignal>, PeerError> {
    let value: serde_json::Value = serde_json::from_str(json).map_err(|e| PeerError::BadSignal(e.to_string()))?;
    if let Some(sdp) = value.get("sdp") {
        let text = sdp.get("sdp").and_then(|s| s.as_str()).unwrap_or_default().to_owned();
        let desc = match sdp.get("type").and_then(|t| t.as_str()) {
            Some("offer") => RTCSessionDescription::offer(text),
            Some("answer") => RTCSessionDescription::answer(text),
            other => return Err(PeerError::BadSignal(format!("unknown description type {other:?}"))),
        }
        .map_err(|e| PeerError::BadSignal(format!("malformed SDP: {e}")))?;
        return Ok(Some(RemoteSignal::Description(Box::new(desc))));
    }
    if let Some(candidate) = value.get("candidate") {
        let init: webrtc::peer_connection::RTCIceCandidateInit = serde_json::from_value(candidate.clone())
            .map_err(|e| PeerError::BadSignal(format!("malformed candidate: {e}")))?;
        if let Err(why) = usable_candidate(&init.candidate) {
            return Ok(Some(RemoteSignal::Unusable(why)));
        }
        return Ok(Some(RemoteSignal::Candidate((!init.candidate.is_empty()).then_some(init))));
    }
    Ok(None)
}

/// Refuses what webrtc-rs would mishandle in a candidate line (`candidate:FOUNDATION COMPONENT
/// ...`): a component outside RFC 8445's 1 to 256 makes its priority computation overflow (a
/// panic in a build with overflow checks, a nonsense priority otherwise). Anything else it
/// parses and judges itself.
fn usable_candidate(candidate: &str) -> Result<(), &'static str> {
    let body = candidate.strip_prefix("candidate:").unwrap_or(candidate);
    match body.split_whitespace().nth(1).map(str::parse::<u64>) {
        Some(Ok(component)) if !(1..=256).contains(&component) => Err("component out of range"),
        _ => Ok(()),
    }
}

/// The first video codec of a description's video section that is one of `ours`, in the
/// description's order.
pub(crate) fn first_video_codec(sdp: &str, ours: &[VideoCodec]) -> Option<VideoCodec> {
    let mut formats: Vec<&str> = Vec::new();
    let mut names: Vec<(&str, &str)> = Vec::new();
    let mut in_video = false;
    for line in sdp.lines() {
        if let Some(media) = line.strip_prefix("m=") {
            if in_video {
                break;
            }
            let mut fields = media.split_whitespace();
            in_video = fields.next() == Some("video");
            if in_video {
                formats = fields.skip(2).collect();
            }
        } else if let Some(map) = line.strip_prefix("a=rtpmap:").filter(|_| in_video) {
            if let Some((pt, encoding)) = map.split_once(' ') {
                names.push((pt, encoding.split('/').next().unwrap_or_default()));
            }
        }
    }
    formats.iter().find_map(|pt| {
        let (_, name) = names.iter().find(|(p, _)| p == pt)?;
        ours.iter().copied().find(|codec| codec.name().eq_ignore_ascii_case(name))
    })
}

/// The session id of an SDP's origin line (`o=<user> <session id> <version> ...`): the same in
/// every offer and answer of one peer connection, new with every new connection.
pub(crate) fn sdp_session_id(sdp: &str) -> Option<&str> {
    let origin = sdp.lines().find_map(|line| line.strip_prefix("o="))?;
    origin.split_whitespace().nth(1)
}

#[cfg(test)]
mod tests {
    use strangers_protocol::SignalKind;

    use super::*;

    fn on_loopback() -> PeerSettings {
        PeerSettings { bind_ip: IpAddr::from([127, 0, 0, 1]), include_loopback: true, ..PeerSettings::default() }
    }

    /// The next description a peer wants sent (candidates are skipped).
    async fn next_description(events: &mut mpsc::UnboundedReceiver<PeerEvent>, kind: SignalKind) -> SignalData {
        loop {
            let event = tokio::time::timeout(Duration::from_secs(10), events.recv()).await;
            match event.expect("a description within 10 s").expect("the peer is alive") {
                PeerEvent::LocalSignal(data) if data.kind() == kind => return data,
                _ => {}
            }
        }
    }

    type Events = mpsc::UnboundedReceiver<PeerEvent>;

    /// A peer on loopback, and what it asks to be sent.
    async fn started(initiator: bool) -> (Peer, Events) {
        let (tx, rx) = mpsc::unbounded_channel();
        (Peer::start(&on_loopback(), &[], initiator, tx).await.expect("the peer starts"), rx)
    }

    /// An initiator and an answerer that exchanged an offer and an answer (returned too).
    async fn negotiated() -> ((Peer, Events), (Peer, Events), SignalData) {
        let (mut a, mut rx_a) = started(true).await;
        let (mut b, mut rx_b) = started(false).await;
        b.apply(&next_description(&mut rx_a, SignalKind::Offer).await).await.expect("the offer applies");
        let answer = next_description(&mut rx_b, SignalKind::Answer).await;
        a.apply(&answer).await.expect("the answer applies");
        ((a, rx_a), (b, rx_b), answer)
    }

    /// A restart asked for again sends a second offer; when the first offer's answer comes after
    /// the second's, it finds no offer outstanding and must not end the call.
    #[tokio::test]
    async fn an_answer_with_no_offer_outstanding_is_ignored() {
        let ((mut a, _), (b, _), answer) = negotiated().await;
        // The same answer again: nothing is outstanding, so it is ignored, not an error.
        a.apply(&answer).await.expect("a stale answer is ignored");
        a.close().await;
        b.close().await;
    }

    #[test]
    fn the_first_video_codec_we_share_is_read_in_the_descriptions_order() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=rtpmap:111 opus/48000/2\r\n\
                   m=video 9 UDP/TLS/RTP/SAVPF 102 96 97\r\na=rtpmap:96 VP8/90000\r\n\
                   a=rtpmap:97 rtx/90000\r\na=rtpmap:102 H264/90000\r\n";
        let both = [VideoCodec::Vp8, VideoCodec::H264];
        assert_eq!(first_video_codec(sdp, &both), Some(VideoCodec::H264));
        assert_eq!(first_video_codec(sdp, &[VideoCodec::Vp8]), Some(VideoCodec::Vp8));
        let vp9_only = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 98\r\na=rtpmap:98 VP9/90000\r\n";
        assert_eq!(first_video_codec(vp9_only, &both), None);
        assert_eq!(first_video_codec("garbage", &both), None);
    }

    #[test]
    fn the_session_id_is_read_from_the_origin_line() {
        let sdp = "v=0\r\no=- 4611731400430051336 2 IN IP4 127.0.0.1\r\ns=-\r\n";
        assert_eq!(sdp_session_id(sdp), Some("4611731400430051336"));
        assert_eq!(sdp_session_id("v=0\r\ns=-\r\n"), None);
        assert_eq!(sdp_session_id("v=0\r\no=-\r\n"), None);
    }

    /// An answer that settles on our offer's second codec is followed by an offer of the answer's
    /// codecs alone, so that the partner cannot go on sending our first; its answer ends it.
    #[tokio::test]
    async fn an_answer_settling_on_our_second_codec_brings_a_new_offer() {
        let with = |video_codecs: &[VideoCodec]| PeerSettings { video_codecs: video_codecs.to_vec(), ..on_loopback() };
        let (tx_a, mut rx_a) = mpsc::unbounded_channel();
        let (tx_b, mut rx_b) = mpsc::unbounded_channel();
        let mut a = Peer::start(&with(&[VideoCodec::Vp8, VideoCodec::H264]), &[], true, tx_a).await.expect("a starts");
        let mut b = Peer::start(&with(&[VideoCodec::H264]), &[], false, tx_b).await.expect("b starts");
        b.apply(&next_description(&mut rx_a, SignalKind::Offer).await).await.expect("the offer applies");
        a.apply(&next_description(&mut rx_b, SignalKind::Answer).await).await.expect("the answer applies");

        let again = next_description(&mut rx_a, SignalKind::Offer).await;
        let sdp: serde_json::Value = serde_json::from_str(again.as_json()).expect("JSON");
        let sdp = sdp["sdp"]["sdp"].as_str().expect("an SDP");
        assert_eq!(first_video_codec(sdp, &[VideoCodec::Vp8, VideoCodec::H264]), Some(VideoCodec::H264));
        assert_eq!(first_video_codec(sdp, &[VideoCodec::Vp8]), None, "VP8 offered again: {sdp}");

        b.apply(&again).await.expect("the new offer applies");
        a.apply(&next_description(&mut rx_b, SignalKind::Answer).await).await.expect("its answer applies");
        assert!(a.pc.pending_local_description().await.is_none(), "no third offer");
        a.close().await;
        b.close().await;
    }

    /// An ICE restart's offer belongs to the same session; the offer of a new connection (the
    /// initiator renewed it) does not, and is refused as such rather than applied.
    #[tokio::test]
    async fn an_offer_from_a_new_connection_is_a_new_session_and_an_ice_restart_is_not() {
        let ((a, mut rx_a), (mut b, mut rx_b), _) = negotiated().await;
        a.restart_ice().await.expect("the restart offers");
        b.apply(&next_description(&mut rx_a, SignalKind::Offer).await).await.expect("the restart's offer applies");
        next_description(&mut rx_b, SignalKind::Answer).await;

        let (renewed, mut rx_renewed) = started(true).await;
        let offer = next_description(&mut rx_renewed, SignalKind::Offer).await;
        assert!(matches!(b.apply(&offer).await, Err(PeerError::NewSession)));
        for peer in [a, b, renewed] {
            peer.close().await;
        }
    }

    /// The partner never gets a candidate before the description it belongs to.
    #[tokio::test]
    async fn candidates_follow_the_description() {
        let (a, mut rx) = started(true).await;
        let mut signals = Vec::new();
        while signals.len() < 2 {
            let event = tokio::time::timeout(Duration::from_secs(10), rx.recv()).await;
            if let PeerEvent::LocalSignal(data) = event.expect("signals within 10 s").expect("the peer is alive") {
                signals.push(data.kind());
            }
        }
        assert_eq!(signals, [SignalKind::Offer, SignalKind::Candidate]);
        a.close().await;
    }
}
