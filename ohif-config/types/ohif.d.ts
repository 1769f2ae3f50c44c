// What the page around OHIF uses of stock OHIF 3.13.2's globals (type-checking only; this
// file is never served). window.services is set by OHIF at start-up, window.cornerstone by
// its cornerstone extension; both may be missing for a while, or for good.

export interface Instance {
  SOPClassUID?: string;
  TransferSyntaxUID?: string;
  Rows?: number;
}

export interface DisplaySet {
  displaySetInstanceUID: string;
  unsupported?: boolean;
  SOPClassUID?: string;
  Modality?: string;
  SeriesDescription?: string;
  SeriesNumber?: number | string;
  instance?: Instance;
  instances?: Instance[];
}

export interface DisplaySetService {
  EVENTS?: {
    DISPLAY_SETS_ADDED?: string;
    DISPLAY_SETS_CHANGED?: string;
    DISPLAY_SETS_REMOVED?: string;
  };
  subscribe(event: string, callback: () => void): unknown;
  getActiveDisplaySets(): DisplaySet[];
  getDisplaySetByUID?(uid: string): (DisplaySet & { SeriesInstanceUID?: string }) | undefined;
}

/** OHIF's viewport grid: which viewport is active and what each one shows. */
export interface ViewportGridService {
  getState(): {
    activeViewportId?: string;
    viewports?: Map<string, { displaySetInstanceUIDs?: string[] }>;
  };
}

export interface Viewport {
  type?: string;
  setBlendMode?(mode: unknown): void;
  setSlabThickness?(thickness: number): void;
  render(): void;
}

/** A volume (MPR) viewport: what the projection control acts on. */
export interface VolumeViewport extends Viewport {
  setBlendMode(mode: unknown): void;
  setSlabThickness(thickness: number): void;
}

/** cornerstone's queues of image requests (RequestPoolManager). */
export interface RequestPool {
  clearRequestStack?(type: string): void;
}

export interface Cornerstone {
  getEnabledElements?(): Array<{ viewport?: Viewport }>;
  imageLoadPoolManager?: RequestPool;
  imageRetrievalPoolManager?: RequestPool;
  CONSTANTS?: { RENDERING_DEFAULTS?: { MINIMUM_SLAB_THICKNESS?: number } };
  Enums: { BlendModes: Record<string, unknown> };
}

declare global {
  interface Window {
    cornerstone?: Cornerstone;
    services?: { displaySetService?: DisplaySetService; viewportGridService?: ViewportGridService };
  }
}
