import type { Transport } from './connection.ts';

/** What the transport hands its output to: the BOSH session. */
export interface BoshSink {
  authid: string;
  /** characters queued for the next response */
  readonly queuedChars: number;
  output(data: string): void;
  /** hold further requests' payloads (backpressure) until `resumeInput` */
  pauseInput(): void;
  resumeInput(): void;
  streamClosing(errorXml?: string): void;
  streamEnded(): void;
}

/** The connection's byte transport for a BOSH session: output is queued for the next response. */
export class BoshTransport implements Transport {
  readonly kind: string;
  secure: boolean;
  readonly canStartTls = false;
  readonly remoteAddress: string;
  private readonly session: BoshSink;

  constructor(session: BoshSink, ip: string, secure: boolean) {
    this.session = session;
    this.remoteAddress = ip;
    this.secure = secure;
    this.kind = secure ? 'boshs' : 'bosh';
  }

  write(data: string): void {
    this.session.output(data);
  }

  openStream(a: { id: string; from: string; to?: string }): void {
    this.session.authid = a.id; // [XEP-0206 §4] 'authid'; no header goes on the wire
  }

  closeStream(errorXml?: string): void {
    this.session.streamClosing(errorXml);
  }

  keepalive(): void {
    // [XEP-0124 §4] the empty response after 'wait' seconds is the keepalive
  }

  bufferedAmount(): number {
    return this.session.queuedChars;
  }

  startTls(): Promise<void> {
    return Promise.reject(new Error('no STARTTLS over BOSH')); // [XEP-0206 §2] encryption is HTTPS' job
  }

  end(): void {
    this.session.streamEnded();
  }

  pause(): void {
    this.session.pauseInput();
  }

  resume(): void {
    this.session.resumeInput();
  }
}
