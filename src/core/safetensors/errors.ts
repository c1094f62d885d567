/**
 * Typed errors for the safetensors format. Every violation names the file, the tensor when there is one,
 * and the rule broken, so a user can act on the message without reading code.
 *
 * Codes mirror the reference (Rust) reader's error kinds where one exists (docs/formats.md §1.2) and refine
 * them where the reference folds several rules into a JSON deserialisation failure (unknown dtype, bad
 * shape, bad metadata); `referenceKind` maps each code back to the reference's name.
 */
export type SafetensorsErrorCode =
  | 'HeaderTooSmall'
  | 'HeaderTooLarge'
  | 'InvalidHeaderLength'
  | 'InvalidHeader'
  | 'InvalidHeaderDeserialization'
  | 'InvalidMetadata'
  | 'InvalidTensorEntry'
  | 'UnknownDtype'
  | 'DuplicateKey'
  | 'InvalidOffset'
  | 'ValidationOverflow'
  | 'MisalignedSlice'
  | 'TensorInvalidInfo'
  | 'MetadataIncompleteBuffer'
  | 'TensorNotFound'
  | 'RangeOutOfBounds'
  | 'FileChanged'
  /** The file is a Git LFS pointer: the repository was cloned without fetching its large files. */
  | 'GitLfsPointer'
  | 'Io';

const REFERENCE_KIND: Record<SafetensorsErrorCode, string> = {
  HeaderTooSmall: 'HeaderTooSmall',
  HeaderTooLarge: 'HeaderTooLarge',
  InvalidHeaderLength: 'InvalidHeaderLength',
  InvalidHeader: 'InvalidHeader',
  InvalidHeaderDeserialization: 'InvalidHeaderDeserialization',
  InvalidMetadata: 'InvalidHeaderDeserialization',
  InvalidTensorEntry: 'InvalidHeaderDeserialization',
  UnknownDtype: 'InvalidHeaderDeserialization',
  DuplicateKey: 'InvalidHeaderDeserialization',
  InvalidOffset: 'InvalidOffset',
  ValidationOverflow: 'ValidationOverflow',
  MisalignedSlice: 'MisalignedSlice',
  TensorInvalidInfo: 'TensorInvalidInfo',
  MetadataIncompleteBuffer: 'MetadataIncompleteBuffer',
  TensorNotFound: 'TensorNotFound',
  RangeOutOfBounds: 'RangeOutOfBounds',
  FileChanged: 'IoError',
  // The reference reads a pointer's "version " as a header length and reports it as too large.
  GitLfsPointer: 'HeaderTooLarge',
  Io: 'IoError',
};

export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  constructor(
    readonly code: SafetensorsErrorCode,
    /** Path of the file the problem is in. */
    readonly file: string,
    /** What is wrong, in words (the rule that was broken). */
    readonly detail: string,
    /** The tensor concerned, when the problem is about one tensor. */
    readonly tensor?: string,
  ) {
    super(`${file}: ${tensor !== undefined ? `tensor ${JSON.stringify(tensor)}: ` : ''}${detail} (${code})`);
  }

  /** The reference reader's name for this kind of error (docs/formats.md §1.2). */
  get referenceKind(): string {
    return REFERENCE_KIND[this.code];
  }
}

export function isSafetensorsError(error: unknown): error is SafetensorsError {
  return error instanceof SafetensorsError;
}
