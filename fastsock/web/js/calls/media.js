// The local microphone (and camera for video): getUserMedia with errors people can act on.
// A voice call asks for the microphone only, never the camera.

export class MediaError extends Error {
  constructor(message, code) {
    super(message);
    this.code = code;
  }
}

async function hasDevice(kind) {
  try {
    const devices = await navigator.mediaDevices.enumerateDevices();
    return devices.some((d) => d.kind === kind);
  } catch {
    return true; // unknown: do not claim it is missing
  }
}

async function describe(err, { audio = true, video }) {
  const what = !audio ? 'camera' : video ? 'camera and microphone' : 'microphone';
  switch (err?.name) {
    case 'NotAllowedError':
    case 'PermissionDeniedError':
      return new MediaError(`Access to the ${what} was blocked. Allow it in your browser's site settings, then try again.`, 'denied');
    case 'NotFoundError':
    case 'DevicesNotFoundError': {
      if (video && !(await hasDevice('videoinput'))) {
        return new MediaError(audio ? 'No camera found. Connect one, or make a voice call instead.' : 'No camera found. Connect one and try again.', 'no_camera');
      }
      return new MediaError('No microphone found. Connect one and try again.', 'no_microphone');
    }
    case 'NotReadableError':
    case 'TrackStartError':
      return new MediaError(`The ${what} could not be started — another application may be using it.`, 'busy_device');
    case 'OverconstrainedError':
      return new MediaError(`The ${what} does not support the requested settings.`, 'constraints');
    case 'SecurityError':
      return new MediaError('Calls need a secure connection (HTTPS).', 'insecure');
    case 'AbortError':
      return new MediaError(`The ${what} could not be started.`, 'aborted');
    default:
      return new MediaError(`The ${what} could not be started: ${err?.message || err}`, 'unknown');
  }
}

const AUDIO = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
const VIDEO = { width: { ideal: 1280 }, height: { ideal: 720 }, facingMode: 'user' };

async function capture({ audio, video }) {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new MediaError('Calls need a secure connection (HTTPS) and a browser with WebRTC.', 'unsupported');
  }
  try {
    return await navigator.mediaDevices.getUserMedia({ audio: audio ? AUDIO : false, video: video ? VIDEO : false });
  } catch (err) {
    throw await describe(err, { audio, video });
  }
}

// -> MediaStream with one audio track, plus one video track when `video`.
export function getLocalMedia(video) {
  return capture({ audio: true, video });
}

// -> MediaStream with the camera only (turning it on later in a group call).
export function getCamera() {
  return capture({ audio: false, video: true });
}

export function stopStream(stream) {
  stream?.getTracks().forEach((t) => t.stop());
}
